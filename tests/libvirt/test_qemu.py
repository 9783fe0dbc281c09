"""The libvirt driver against a real libvirtd with QEMU/KVM (qemu:///system), started by the session fixture
of tests/support/libvirtd.py: real QEMU processes, a real dir pool with qemu-img made images, an isolated
network with a Linux bridge and a static DHCP entry, and an nwfilter made from a security group.

The VMs have a disk with no operating system: they boot into the firmware and keep running, which is all the
lifecycle and monitoring need. Everything created is named with the session prefix and removed at the end;
checks go through virsh and the host's files, not through the driver under test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nebctl.drivers.errors import DriverError, NotFoundError
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import (
    DatastoreDefinition,
    DiskAttachment,
    HostRef,
    ImageImport,
    NetworkDefinition,
    NicDefinition,
    Ownership,
    SecurityGroupDefinition,
    SecurityRuleDefinition,
    VMDefinition,
    VolumeDefinition,
)
from tests.libvirt.conftest import Drivers, make_image
from tests.support.libvirtd import LibvirtDaemon, exclusive_objects

pytestmark = pytest.mark.libvirt

OWNER = Ownership(stack="tests", kind="VirtualMachine", namespace="default", name="qemu")


def virsh(*args: str, check: bool = True) -> str:
    result = subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)}: {result.stderr}")
    return result.stdout


def qemu_pid(name: str) -> int | None:
    """The QEMU process of a running domain, from libvirt's pid file, when it is alive."""
    pid_file = Path("/run/libvirt/qemu") / f"{name}.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().strip() or 0)
    return pid if pid and Path(f"/proc/{pid}").exists() else None


@dataclass
class QemuEnv:
    host: HostRef
    pool: str
    image: str
    network: str
    bridge: str
    group: str
    subnet: int


@pytest.fixture(scope="module")
def qemu_env(
    libvirtd: LibvirtDaemon, drivers: Drivers, prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QemuEnv]:
    host = HostRef(name="local", uri=libvirtd.uri)
    directory = tmp_path_factory.mktemp("pool")
    subnet = 100 + os.getpid() % 100  # distinct from other sessions' networks on the same daemon
    env = QemuEnv(host=host, pool=f"{prefix}-pool", image=f"{prefix}-base.qcow2", network=f"{prefix}-lan",
                  bridge="", group=f"{prefix}-ssh", subnet=subnet)  # fmt: skip
    created: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(exclusive_objects())  # other sessions' contract tests clean up what appears
        stack.callback(_cleanup, drivers, env, created)
        drivers.storage.create_datastore(host, DatastoreDefinition(name=env.pool, path=str(directory / "pool")))
        created.append("pool")
        source = make_image(tmp_path_factory.mktemp("src") / "base.qcow2", size="64M")
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        drivers.storage.import_image(host, env.pool, ImageImport(volume=env.image, source=str(source), sha256=digest))
        status = drivers.network.create(host, NetworkDefinition(
            name=env.network, mode="isolated", cidr=f"10.213.{subnet}.0/24", gateway=f"10.213.{subnet}.1",
            range_first=f"10.213.{subnet}.100", range_last=f"10.213.{subnet}.200"))  # fmt: skip
        created.append("network")
        env.bridge = status.bridge or ""
        drivers.network.update_sg(host, SecurityGroupDefinition(name=env.group, rules=(
            SecurityRuleDefinition(direction="in", protocol="tcp", ports=("22",)),
            SecurityRuleDefinition(direction="out", protocol="any"))))  # fmt: skip
        created.append("group")
        yield env


def _cleanup(drivers: Drivers, env: QemuEnv, created: list[str]) -> None:
    for line in virsh("list", "--all", "--name").split():
        if line.startswith(env.pool.removesuffix("-pool")):
            virsh("destroy", line, check=False)
            virsh("undefine", line, "--nvram", check=False)
    with contextlib.suppress(DriverError):
        if "group" in created:
            drivers.network.delete_sg(env.host, env.group)
        if "network" in created:
            drivers.network.delete(env.host, env.network)
    if "pool" in created:
        with contextlib.suppress(DriverError):
            for volume in drivers.storage.monitor(env.host, env.pool).volumes:
                drivers.storage.delete(env.host, env.pool, volume)
        drivers.storage.delete_datastore(env.host, env.pool)


def vm_with_disk(drivers: Drivers, env: QemuEnv, name: str, index: int) -> VMDefinition:
    disk = drivers.storage.clone(env.host, env.pool, VolumeDefinition(volume=f"{name}-disk0", size=128 * 1024**2,
                                                                      backing=env.image))  # fmt: skip
    assert disk.backing is not None
    nic = NicDefinition(network=env.network, mac=f"52:54:00:5e:{env.subnet:02x}:{index:02x}",
                        ip=f"10.213.{env.subnet}.{10 + index}", security_groups=(env.group,))  # fmt: skip
    return VMDefinition(name=name, uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, name)), vcpu=1, memory=128 * 1024**2,
                        disks=(DiskAttachment(volume=f"{name}-disk0", datastore=env.pool),), nics=(nic,),
                        owner=OWNER)  # fmt: skip


def test_storage_on_a_real_dir_pool(drivers: Drivers, qemu_env: QemuEnv) -> None:
    host, pool = qemu_env.host, qemu_env.pool
    base = drivers.storage.monitor(host, pool).volumes[qemu_env.image]
    assert (base.format, base.capacity) == ("qcow2", 64 * 1024**2)
    overlay = drivers.storage.clone(host, pool, VolumeDefinition(volume="ov.qcow2", size=96 * 1024**2,
                                                                 backing=qemu_env.image))  # fmt: skip
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", overlay.path], check=True,
                                     capture_output=True, text=True).stdout)  # fmt: skip
    assert info["backing-filename"] == base.path
    assert info["virtual-size"] == 96 * 1024**2
    grown = drivers.storage.resize(host, pool, "ov.qcow2", 128 * 1024**2)
    assert grown.capacity == 128 * 1024**2
    full = drivers.storage.clone(host, pool, VolumeDefinition(volume="full.qcow2", size=None, backing=qemu_env.image,
                                                              clone="full"))  # fmt: skip
    assert full.backing is None and Path(full.path).exists()
    snap = drivers.storage.snapshot(host, pool, "ov.qcow2", "before")
    assert Path(snap.path).exists()
    status = drivers.storage.monitor(host, pool)
    assert status.total > 0 and status.free > 0
    for volume in ("ov.qcow2", "full.qcow2", snap.name):
        drivers.storage.delete(host, pool, volume)
        assert not Path(status.volumes[volume].path).exists()


def test_isolated_network_has_a_bridge_and_static_leases(drivers: Drivers, qemu_env: QemuEnv) -> None:
    assert qemu_env.bridge
    assert subprocess.run(["ip", "link", "show", qemu_env.bridge], capture_output=True, check=False).returncode == 0
    nic = NicDefinition(network=qemu_env.network, mac="52:54:00:5f:00:01", ip=f"10.213.{qemu_env.subnet}.50")
    drivers.network.pre(qemu_env.host, "lease-test", nic)
    assert "52:54:00:5f:00:01" in virsh("net-dumpxml", qemu_env.network)
    hosts_file = Path(f"/var/lib/libvirt/dnsmasq/{qemu_env.network}.hostsfile")
    assert f"52:54:00:5f:00:01,10.213.{qemu_env.subnet}.50" in hosts_file.read_text()
    drivers.network.clean(qemu_env.host, "lease-test", nic)
    assert "52:54:00:5f:00:01" not in virsh("net-dumpxml", qemu_env.network)
    assert "<forward" not in virsh("net-dumpxml", qemu_env.network)  # isolated


def test_security_group_is_an_nwfilter(drivers: Drivers, qemu_env: QemuEnv) -> None:
    document = virsh("nwfilter-dumpxml", qemu_env.group)
    assert "dstportstart='22'" in document
    assert "action='drop'" in document


def test_real_qemu_lifecycle_and_monitoring(drivers: Drivers, qemu_env: QemuEnv, prefix: str) -> None:
    host = qemu_env.host
    vm = vm_with_disk(drivers, qemu_env, f"{prefix}-vm1", 1)
    for nic in vm.nics:
        drivers.network.pre(host, vm.uuid, nic)
    status = drivers.virt.deploy(host, vm)
    assert status.state is VMLiveState.RUNNING
    assert drivers.virt.deploy(host, vm).uuid == vm.uuid
    assert virsh("list", "--all", "--name").split().count(vm.name) == 1
    pid = qemu_pid(vm.name)
    assert pid is not None, "no QEMU process"
    for nic in vm.nics:
        drivers.network.post(host, vm.uuid, nic)
    assert qemu_env.group in virsh("nwfilter-binding-list")

    first = {s.uuid: s for s in drivers.monitoring.probe_vms(host)}[vm.uuid]
    assert (first.state, first.vcpu, first.memory, first.owner) == (VMLiveState.RUNNING, 1, vm.memory, OWNER)
    probe = drivers.monitoring.probe_host(host)
    assert probe.state is HostLiveState.ONLINE and probe.cpus >= 1 and probe.free_memory > 0

    drivers.virt.suspend(host, vm.uuid)
    assert "paused" in virsh("domstate", vm.name)
    drivers.virt.resume(host, vm.uuid)
    assert "running" in virsh("domstate", vm.name)

    # The firmware ignores ACPI: the graceful stop gives up after its timeout and destroys the domain.
    drivers.virt.shutdown(host, vm.uuid, timeout=0.5)
    assert "shut off" in virsh("domstate", vm.name)
    assert qemu_pid(vm.name) is None

    drivers.virt.deploy(host, vm)
    assert drivers.virt.poll(host, vm.uuid).state is VMLiveState.RUNNING
    drivers.virt.undeploy(host, vm.uuid)
    assert vm.name not in virsh("list", "--all", "--name").split()
    for nic in vm.nics:
        drivers.network.clean(host, vm.uuid, nic)
    with pytest.raises(NotFoundError):
        drivers.virt.poll(host, vm.uuid)


def test_lifecycle_events_from_the_daemon(drivers: Drivers, qemu_env: QemuEnv, prefix: str) -> None:
    host = qemu_env.host
    vm = vm_with_disk(drivers, qemu_env, f"{prefix}-vm2", 2)
    stopped = threading.Event()
    stop = drivers.monitoring.watch(host, lambda u, event: stopped.set() if (u, event) == (vm.uuid, "stopped")
                                    else None)  # fmt: skip
    assert stop is not None
    try:
        for nic in vm.nics:
            drivers.network.pre(host, vm.uuid, nic)
        drivers.virt.deploy(host, vm)
        virsh("destroy", vm.name)  # drift made outside nebctl
        assert stopped.wait(10)
        assert drivers.virt.poll(host, vm.uuid).state is VMLiveState.STOPPED
    finally:
        stop()
        drivers.virt.undeploy(host, vm.uuid)
        for nic in vm.nics:
            drivers.network.clean(host, vm.uuid, nic)


def test_an_imported_domain_keeps_the_mac_its_nic_has(drivers: Drivers, qemu_env: QemuEnv, prefix: str) -> None:
    """A domain defined outside nebctl, with a MAC nebctl would never derive, adopted as a VM whose manifest
    gives it two NICs: the record keeps the domain's MAC (read from the real daemon by the probe ``import``
    makes) and leaves out the NIC the domain lacks, for the next plan to add."""
    from nebctl.controller.importing import adopted_record, find_vm
    from nebctl.core.keys import Kind, ResourceKey
    from nebctl.core.settings import Settings
    from nebctl.drivers.registry import build_registry
    from nebctl.schemas.loading import load_text

    name, live_mac = f"{prefix}-legacy", f"52:54:00:9a:{qemu_env.subnet:02x}:77"
    domain = (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os><devices>"
        f"<interface type='network'><mac address='{live_mac}'/><source network='{qemu_env.network}'/></interface>"
        "</devices></domain>"
    )
    manifest = (
        "apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {name: legacy}\n"
        "spec: {vcpu: 1, memory: 128Mi, nics: [{network: lan}, {network: backend}]}\n"
        + "".join(
            f"---\napiVersion: nebctl/v1\nkind: Network\nmetadata: {{name: {net}}}\nspec: {{mode: isolated, "
            f"cidr: 10.{n}.0.0/24}}\n"
            for n, net in ((7, "lan"), (8, "backend"))
        )
    )
    key = ResourceKey.of(Kind.VIRTUAL_MACHINE, "legacy")
    definition = Path(os.environ.get("TMPDIR", "/tmp")) / f"{name}.xml"
    definition.write_text(domain)
    registry = build_registry(Settings())
    try:
        virsh("define", str(definition))
        where, status = find_vm(name, {"local": (qemu_env.host, None)}, registry)
        record = adopted_record(
            key, stack="s", host=where, status=status, document=load_text(manifest).documents[key], existing=None
        )
    finally:
        registry.close()
        virsh("undefine", name, check=False)
        definition.unlink()
    assert status.macs == (live_mac,)
    assert record.applied is not None
    assert [(nic["network"], nic["mac"]) for nic in record.applied["nics"]] == [("lan", live_mac)]


def _filter_includes(name: str) -> list[str]:
    """The groups a filter includes, as the daemon holds it (read with virsh, not through the driver)."""
    document = ET.fromstring(virsh("nwfilter-dumpxml", name))
    return sorted(str(ref.get("filter")) for ref in document.findall("./filterref"))


def _nic_filters() -> set[str]:
    return {line.split()[1] for line in virsh("nwfilter-list").splitlines() if "nebctl-nic-" in line}


def test_combined_filters_whose_names_collide_take_the_next_name(
    drivers: Drivers, qemu_env: QemuEnv, prefix: str
) -> None:
    """With the digest narrowed to one bit, two NICs' sets of groups name their combined filters alike: the
    second set takes the next name, each NIC's domain references the filter that includes exactly its groups,
    a repeated prepare (a resumed apply) finds the same filters, and once the first set's filter is gone the
    second still finds its own (no second copy under the freed name)."""
    from nebctl.drivers.libvirt.xmlbuild.filters import nic_filter_name

    host = qemu_env.host
    network, virt = drivers.network, drivers.virt
    bits = (network.nic_filter_bits, virt.nic_filter_bits)
    groups = [f"{prefix}-g{index}" for index in range(4)]
    # Two sets whose first names collide at one bit (found by trying pairs of the four groups).
    pairs = [(a, b) for i, a in enumerate(groups) for b in groups[i + 1 :]]
    first_set, second_set = next(
        (x, y) for x in pairs for y in pairs if x < y and nic_filter_name(x, 0, 1) == nic_filter_name(y, 0, 1)
    )
    before = _nic_filters()
    vms = [
        VMDefinition(
            name=f"{prefix}-sg{n}",
            uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}-sg{n}")),
            vcpu=1,
            memory=128 * 1024**2,
            owner=OWNER,
            nics=(
                NicDefinition(
                    network=qemu_env.network, mac=f"52:54:00:5f:{qemu_env.subnet:02x}:{n:02x}", security_groups=sets
                ),
            ),
        )
        for n, sets in ((1, first_set), (2, second_set))
    ]
    try:
        network.nic_filter_bits = virt.nic_filter_bits = 1
        for group in groups:
            network.update_sg(host, SecurityGroupDefinition(name=group, rules=()))
        for vm in vms:
            network.pre(host, vm.uuid, vm.nics[0])
            virt.deploy(host, vm)
        names = {}
        for vm in vms:
            domain = ET.fromstring(virsh("dumpxml", vm.name))
            names[vm.name] = str(domain.find("./devices/interface/filterref").get("filter"))  # type: ignore[union-attr]
            assert _filter_includes(names[vm.name]) == sorted(vm.nics[0].security_groups)
        assert len(set(names.values())) == 2
        assert names[vms[0].name] == nic_filter_name(first_set, 0, 1), "the first set keeps the name it always had"
        created = _nic_filters() - before
        assert created == set(names.values())
        for vm in vms:  # a resumed apply prepares again: the same filters, nothing new
            network.pre(host, vm.uuid, vm.nics[0])
        assert _nic_filters() - before == created

        virt.undeploy(host, vms[0].uuid)
        network.clean(host, vms[0].uuid, vms[0].nics[0])
        assert _nic_filters() - before == {names[vms[1].name]}
        virt.shutdown(host, vms[1].uuid, timeout=0.5)
        virt.deploy(host, vms[1])  # defined again while the first name is free: still its own filter
        domain = ET.fromstring(virsh("dumpxml", vms[1].name))
        assert domain.find("./devices/interface/filterref").get("filter") == names[vms[1].name]  # type: ignore[union-attr]
        virt.undeploy(host, vms[1].uuid)
        network.clean(host, vms[1].uuid, vms[1].nics[0])
        assert _nic_filters() - before == set()
    finally:
        network.nic_filter_bits, virt.nic_filter_bits = bits
        for vm in vms:
            virsh("destroy", vm.name, check=False)
            virsh("undefine", vm.name, check=False)
        for name in _nic_filters() - before:
            virsh("nwfilter-undefine", name, check=False)
        for group in groups:
            with contextlib.suppress(DriverError):
                network.delete_sg(host, group)
