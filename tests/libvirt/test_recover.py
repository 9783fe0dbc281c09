"""Drift of networks, pools, volumes and filters, and rebuilding a lost database, on real libvirt (qemu:///system
of tests/support/libvirtd.py), through the real CLI, with the examples of manifests/examples-libvirt/ rewritten
for the test (tests/libvirt/test_end_to_end.py's fixture: per-run names, paths and /24).

1. The examples without their VMs are applied; a network, the image's volume and the security group's nwfilter
   are deleted with virsh: ``diff`` shows each under "Changed outside nebctl", ``apply`` makes them again, and
   the next diff has nothing to do.
2. The VMs are applied too; the database file is deleted: ``diff`` refuses, naming both domains, the network
   (which carry their ownership in their ``<metadata>``), the pool, the image's volume and the group's nwfilter
   (whose ownership is in the host's ownership ledger), and ``recover`` rebuilds the records of every one of
   them. The next ``diff`` of the unchanged manifests has nothing to do.
3. ``destroy`` leaves nothing of the test in libvirt (the ledger either: it goes with its last entry).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.libvirt.test_end_to_end import run  # noqa: F401  # the fixture
from tests.support.libvirt_scenario import Run, check, remove_prefixed

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
    assert f"datastore/{pool}: pool {pool} on kvm-local is this stack's" in refused.stderr
    assert f"image/{image}: volume image-{image} on kvm-local is this stack's" in refused.stderr
    assert f"securitygroup/{group}: filter nebctl-sg-{group} on kvm-local is this stack's" in refused.stderr
    assert "run `nebctl recover`" in refused.stderr
    recovered = check(run.nebctl("recover", *run.manifest_args()))
    for vm in vms:
        assert f"rebuilt vm/{vm['metadata']['name']} (stack {run.prefix}) on kvm-local" in recovered
    for key in (f"network/{network}", f"datastore/{pool}", f"image/{image}", f"securitygroup/{group}"):
        assert f"rebuilt {key} (stack {run.prefix})" in recovered, recovered
    after = check(run.nebctl("diff", *run.manifest_args()))
    assert "No changes" in after, after

    # 3. destroy leaves nothing.
    for document in run.documents:
        document["spec"].get("lifecycle", {}).pop("preventDestroy", None)
    run.write()
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    check(run.nebctl("destroy", "--stack", run.prefix, "--yes"))
    assert remove_prefixed(run.connection, run.prefix) == []
