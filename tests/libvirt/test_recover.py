"""Drift of networks, pools, volumes and filters, and rebuilding a lost database, on real libvirt (qemu:///system
of tests/support/libvirtd.py), through the real CLI, with the examples of manifests/examples-libvirt/ rewritten
for the test (tests/libvirt/test_end_to_end.py's fixture: per-run names, paths and /24).

1. The examples without their VMs are applied; a network, the image's volume and the security group's nwfilter
   are deleted with virsh: ``diff`` shows each under "Changed outside nebctl", ``apply`` makes them again, and
   the next diff has nothing to do.
2. The VMs are applied too; the database file is deleted: ``diff`` refuses, naming both domains and the network
   (the objects libvirt lets carry an ownership: domains and networks; its pools, volumes and filters have no
   metadata), and ``recover`` rebuilds their records (the others it cannot: it says which host's objects it
   could not list whole). With the VMs and the network recovered, ``diff`` plans only the kinds libvirt cannot
   carry ownership for, never a VM or a network.
3. ``destroy`` leaves nothing of the test in libvirt.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.libvirt.test_end_to_end import Run, _remove_prefixed, check, run  # noqa: F401  # ``run`` is the fixture

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(900)]


def virsh(*args: str) -> None:
    subprocess.run(["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True)


def test_drift_of_each_kind_and_a_lost_database_on_libvirt(run: Run) -> None:  # noqa: F811  # the fixture
    names = {d["kind"]: d["metadata"]["name"] for d in run.documents}
    network, pool, image, group = names["Network"], names["Datastore"], names["Image"], names["SecurityGroup"]
    vms = run.vms()
    everything = list(run.documents)

    # 1. drift of a network, an image volume and an nwfilter, with no VM using them.
    run.documents = [d for d in everything if d["kind"] != "VirtualMachine"]
    run.write()
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    virsh("net-destroy", network)
    virsh("net-undefine", network)
    virsh("vol-delete", "--pool", pool, f"image-{image}")
    virsh("nwfilter-undefine", f"nebctl-sg-{group}")
    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    outside = plan.split("Changed outside nebctl:")[1]
    assert f"# network/{network} network {network} was deleted outside nebctl on kvm-local" in outside
    assert f"# image/{image} volume image-{image} was deleted outside nebctl on kvm-local" in outside
    assert f"# securitygroup/{group} filter nebctl-sg-{group} was deleted outside nebctl on kvm-local" in outside
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    assert run.connection.networkLookupByName(network).isActive()
    assert run.connection.storagePoolLookupByName(pool).storageVolLookupByName(f"image-{image}")
    assert run.connection.nwfilterLookupByName(f"nebctl-sg-{group}")
    check(run.nebctl("diff", *run.manifest_args()))

    # 2. the VMs, then the database lost.
    run.documents = everything
    run.write()
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    (run.root / "state.db").unlink()
    refused = run.nebctl("diff", *run.manifest_args())
    assert refused.returncode == 1, refused.stdout + refused.stderr
    for vm in vms:
        name = vm["metadata"]["name"]
        assert f"vm/{name}: domain {name} (" in refused.stderr
    assert f"network/{network}: network {network} on kvm-local is this stack's" in refused.stderr
    assert "run `nebctl recover`" in refused.stderr
    recovered = run.nebctl("recover", *run.manifest_args())
    for vm in vms:
        assert f"rebuilt vm/{vm['metadata']['name']} (stack {run.prefix}) on kvm-local" in recovered.stdout
    assert f"rebuilt network/{network}" in recovered.stdout
    after = run.nebctl("diff", *run.manifest_args())
    for vm in vms:
        assert f'vm "{vm["metadata"]["name"]}"' not in after.stdout, after.stdout
    assert f'network "{network}"' not in after.stdout

    # 3. destroy leaves nothing.
    for document in run.documents:
        document["spec"].get("lifecycle", {}).pop("preventDestroy", None)
    run.write()
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    check(run.nebctl("destroy", "--stack", run.prefix, "--yes"))
    assert _remove_prefixed(run.connection, run.prefix) == []
