"""End to end with real QEMU domains: the example manifests of manifests/examples-libvirt/, applied through the
real CLI (``nebctl`` subprocesses) to the qemu:///system daemon of tests/support/libvirtd.py.

One scenario, in order, because each step starts from the state the previous one left:

1. ``apply`` gives two running QEMU processes (their uuids on the qemu-system command lines);
2. ``virsh destroy`` of one shows as drift in ``diff`` (exit 2, "was stopped") and the next ``apply`` starts it;
3. a memory change is planned as a restart and applied (the domain's maximum memory changes); the firmware
   ignores the graceful shutdown, so the events show it forced off;
4. removing a VM and applying with ``--prune`` removes its domain, its disk volume and its DHCP lease;
5. a create-first replacement (``lifecycle.createBeforeDestroy``) starts the VM's next incarnation as a domain of
   its own, then removes the old domain, its disk and its lease;
6. ``destroy --yes`` leaves no domain, network, pool, volume or nwfilter of the test in libvirt.

The manifests are copied to a temporary directory and rewritten there: every name gets a per-run prefix (the
daemon is shared with other test sessions and engineers), the datastore and the image live under the test's
tmp_path, and the network gets its own /24. A finalizer removes whatever carries the prefix, even on failure.

The test holds the daemon's objects lock (tests/support/libvirtd.py) for its duration: the contract suite's
qemu set deletes whatever appears on the daemon during one of its tests, which would include these objects.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import in_ci
from tests.support.libvirt_scenario import (
    Run,
    check,
    load_examples,
    remove_prefixed,
    rewrite_examples,
)
from tests.support.libvirtd import LibvirtDaemon, exclusive_objects

try:
    import libvirt
except ImportError:
    if in_ci():  # CI installs libvirt-python: its absence there is a broken setup, not a reason to skip
        raise
    pytest.skip("libvirt-python is not installed (pip install nebctl[libvirt])", allow_module_level=True)

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(900)]

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
def run(libvirtd: LibvirtDaemon, tmp_path: Path) -> Iterator[Run]:
    prefix = f"e2e{os.getpid() % 1000}{uuid.uuid4().hex[:4]}"
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "base.qcow2"), "64M"], check=True)
    # Firmware-only guests ignore ACPI: a short graceful phase keeps the restart step fast.
    (tmp_path / "config.yaml").write_text("shutdown_timeout: 1s\nparallelism: 8\n")
    octet = random.randint(1, 254)
    connection = libvirt.open(libvirtd.uri)
    documents = rewrite_examples(load_examples(), prefix, tmp_path, octet)
    scenario = Run(tmp_path, manifests, prefix, documents, connection)
    scenario.write()
    try:
        with exclusive_objects():
            yield scenario
    finally:
        try:
            remove_prefixed(connection, prefix)
        finally:
            connection.close()


def _qemu_command_lines() -> str:
    result = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True, check=False)
    return result.stdout


def _lease_addresses(connection: Any, network: str) -> set[str]:
    document = ET.fromstring(connection.networkLookupByName(network).XMLDesc(0))
    return {host.get("ip", "") for host in document.findall("./ip/dhcp/host")}


def test_examples_apply_drift_restart_prune_and_destroy(run: Run) -> None:
    vm1, vm2 = (vm["metadata"]["name"] for vm in run.vms())
    network = next(d["metadata"]["name"] for d in run.documents if d["kind"] == "Network")
    pool_name = next(d["metadata"]["name"] for d in run.documents if d["kind"] == "Datastore")

    # 1. apply: two running QEMU processes.
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    domains = {name: run.domain(name) for name in (vm1, vm2)}
    assert all(domain.isActive() for domain in domains.values())
    command_lines = _qemu_command_lines()
    for domain in domains.values():
        assert domain.UUIDString() in command_lines
    check(run.nebctl("diff", *run.manifest_args()))  # converged: nothing more to do

    # 2. a domain stopped behind nebctl's back is drift, and apply starts it again.
    subprocess.run(["virsh", "-c", "qemu:///system", "destroy", vm1], check=True, capture_output=True)
    assert not run.domain(vm1).isActive()
    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    assert f"vm/{vm1} was stopped" in plan
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    assert run.domain(vm1).isActive()
    assert run.domain(vm1).UUIDString() in _qemu_command_lines()

    # 3. a memory change is a restart with the new maximum memory.
    run.vms()[0]["spec"]["memory"] = "192Mi"
    run.write()
    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    assert f'vm "{vm1}"' in plan and "restart required" in plan
    assert '"128Mi" -> "192Mi"' in plan
    before = run.domain(vm1).ID()
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    domain = run.domain(vm1)
    assert domain.isActive()
    assert domain.maxMemory() == 192 * MIB // KIB
    assert domain.ID() != before  # a new QEMU process, not a balloon change
    # A firmware-only guest ignores ACPI: the restart's shutdown ended in a hard stop, and the events say so.
    events = [json.loads(line) for line in check(run.nebctl("events", "-n", "1000", "-o", "json")).splitlines()]
    [stop] = [e for e in events if e["type"] == "action.succeeded" and e["name"] == vm1 and "shut down" in e["message"]]
    assert stop["severity"] == "warning" and "forced off" in stop["message"], stop

    # 4. a VM removed from the manifests goes with --prune, with its disk volume and its lease.
    removed = run.vms()[1]
    uuid_removed = run.domain(vm2).UUIDString()
    ip_removed = removed["spec"]["nics"][0]["ip"]
    assert ip_removed in _lease_addresses(run.connection, network)
    volumes = {volume.name() for volume in run.connection.storagePoolLookupByName(pool_name).listAllVolumes(0)}
    disks_removed = {name for name in volumes if name.startswith(vm2)}
    assert disks_removed
    run.documents.remove(removed)
    run.write()
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))  # without --prune it stays
    assert run.domain(vm2).isActive()
    check(run.nebctl("apply", *run.manifest_args(), "--prune", "--yes"))
    with pytest.raises(libvirt.libvirtError):
        run.connection.lookupByUUIDString(uuid_removed)
    volumes = {volume.name() for volume in run.connection.storagePoolLookupByName(pool_name).listAllVolumes(0)}
    assert not disks_removed & volumes
    assert ip_removed not in _lease_addresses(run.connection, network)
    assert uuid_removed not in _qemu_command_lines()
    assert run.domain(vm1).isActive()

    # 5. a create-first replacement (new cloud-init data): the new domain, the VM's next incarnation, runs beside
    # the old one, which then goes with its disk and lease. A static address the old VM holds is refused first.
    kept = run.vms()[0]
    kept["spec"]["lifecycle"] = {**kept["spec"].get("lifecycle", {}), "createBeforeDestroy": True}
    kept["spec"]["cloudInit"] = {"userData": "#cloud-config\nhostname: replaced\n"}
    run.write()
    refused = run.nebctl("diff", *run.manifest_args())
    assert refused.returncode == 1 and f"is held by vm/{vm1}~0, the VM it replaces" in refused.stderr
    old_ip = kept["spec"]["nics"][0].pop("ip")
    run.write()
    plan = check(run.nebctl("diff", *run.manifest_args()), expected=2)
    assert f'+/- vm "{vm1}"' in plan and f'- vm "{vm1}~0"' in plan
    old_uuid = run.domain(vm1).UUIDString()
    old_disks = {
        v.name()
        for v in run.connection.storagePoolLookupByName(pool_name).listAllVolumes(0)
        if v.name() == f"{vm1}-disk0"
    }
    assert old_disks
    check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    vm1 = f"{vm1}~1"  # the domain of the VM's new incarnation
    new = run.domain(vm1)
    assert new.isActive() and new.UUIDString() != old_uuid and new.UUIDString() in _qemu_command_lines()
    with pytest.raises(libvirt.libvirtError):
        run.connection.lookupByUUIDString(old_uuid)
    volumes = {volume.name() for volume in run.connection.storagePoolLookupByName(pool_name).listAllVolumes(0)}
    assert not old_disks & volumes and f"{vm1}-disk0" in volumes
    leases = _lease_addresses(run.connection, network)
    assert old_ip not in leases and len(leases) == 1
    check(run.nebctl("diff", *run.manifest_args()))  # converged
    assert f"{vm1.removesuffix('~1')}~0" not in check(run.nebctl("get", "vm"))

    # 6. destroy leaves nothing of the test in libvirt.
    protected = [d for d in run.documents if d["spec"].get("lifecycle", {}).get("preventDestroy")]
    for document in protected:
        document["spec"]["lifecycle"]["preventDestroy"] = False
    if protected:
        run.write()
        check(run.nebctl("apply", *run.manifest_args(), "--yes"))
    uuid_kept = run.domain(vm1).UUIDString()
    check(run.nebctl("destroy", "--stack", run.prefix, "--yes"))
    assert remove_prefixed(run.connection, run.prefix) == []
    assert uuid_kept not in _qemu_command_lines()
    assert not (run.root / "datastore").exists() or not any((run.root / "datastore").iterdir())
    assert vm1.removesuffix("~1") not in check(run.nebctl("get", "vm"))  # and nothing left in nebctl's records
