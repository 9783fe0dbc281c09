"""Migration between two real libvirt daemons: qemu:///system (tests/support/libvirtd.py) and the private peer
daemon of tests/support/libvirtd_peer.py, both QEMU/KVM on this machine; through the driver, and through
nebctl itself (a VM whose ``placement.host`` changes). Also, last, between two of libvirt's test hypervisors.

Each driver test gets a datastore (a dir pool of the same name) on both daemons: by default in two different
directories, as two hosts with local disks have, so a disk that moves is really copied (by QEMU during a live
migration, through libvirt's streams during a cold one) and removed from the source; with ``shared=True`` in
one directory, as on shared storage, where nothing may be copied or removed. Checks go through virsh and the
files, not through the driver under test.

Then a migration killed at each point and done again: the states a crash leaves (a truncated or complete copy
on the target with the VM still on the source; the VM defined on both; the VM on the target with the source's
volumes left) are made by hand, and two migrations, one cold and one live, are really killed (SIGKILL) in the
middle of their disk copy. Each retry must leave the VM on the target only, its disks byte for byte the VM's
(sha256), and nothing on the source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nebctl.drivers.errors import ConflictError, DriverError, NotFoundError, PermanentError, TemporaryError
from nebctl.drivers.libvirt.common import domain_facts
from nebctl.drivers.libvirt.migration import MIGRATION_NAMESPACE, MIGRATION_PREFIX
from nebctl.drivers.libvirt.seeds import seed_volume_name
from nebctl.drivers.libvirt.xmlbuild.filters import nic_filter_name
from nebctl.drivers.states import VMLiveState
from nebctl.drivers.types import (
    CloudInitData,
    DatastoreDefinition,
    DiskAttachment,
    HostRef,
    NetworkDefinition,
    NicDefinition,
    Ownership,
    SecurityGroupDefinition,
    VMDefinition,
    VolumeDefinition,
)
from tests.libvirt.conftest import Drivers
from tests.support.libvirtd import LibvirtDaemon, exclusive_objects
from tests.support.libvirtd_peer import PeerDaemon

pytestmark = pytest.mark.libvirt

MIB = 1024**2
NEBCTL = Path(sys.executable).with_name("nebctl")
OWNER = Ownership(stack="tests", kind="VirtualMachine", namespace="default", name="migration")


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60, check=False)


def domain_state(host: HostRef, name: str) -> str | None:
    """``running (migrated)``, ``running (booted)``, ``shut off (destroyed)``...; None when there is no domain."""
    result = virsh(host.uri, "domstate", "--reason", name)
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass
class Hosts:
    source: HostRef
    target: HostRef
    pool: str
    source_dir: Path
    target_dir: Path


@contextlib.contextmanager
def two_hosts(
    drivers: Drivers, daemon: LibvirtDaemon, peer: PeerDaemon, prefix: str, tmp_path: Path, *, shared: bool = False,
    target_pool: bool = True,
) -> Iterator[Hosts]:  # fmt: skip
    """A datastore on both daemons; at the end every domain and volume of the test is gone from both."""
    pool = f"{prefix}-mig{uuid.uuid4().hex[:6]}"
    hosts = Hosts(HostRef("local", daemon.uri), HostRef("peer", peer.uri), pool, tmp_path / "a",
                  tmp_path / ("a" if shared else "b"))  # fmt: skip
    # The system daemon is shared: other sessions' contract tests remove what appears on it unless we hold this.
    with exclusive_objects():
        try:
            drivers.storage.create_datastore(hosts.source, DatastoreDefinition(pool, str(hosts.source_dir)))
            if target_pool:
                drivers.storage.create_datastore(hosts.target, DatastoreDefinition(pool, str(hosts.target_dir)))
            yield hosts
        finally:
            for host in (hosts.source, hosts.target):
                for name in virsh(host.uri, "list", "--all", "--name").stdout.split():
                    if name.startswith(prefix):
                        virsh(host.uri, "destroy", name)
                        virsh(host.uri, "undefine", name)
                with contextlib.suppress(DriverError):
                    for volume in drivers.storage.monitor(host, pool).volumes:
                        drivers.storage.delete(host, pool, volume)
                    drivers.storage.delete_datastore(host, pool)


def a_disk(drivers: Drivers, hosts: Hosts, name: str, fmt: str, data: bytes, offset: int) -> DiskAttachment:
    """A 64 MiB volume on the source with ``data`` written at ``offset`` of what the guest sees, the rest a
    hole (never written)."""
    info = drivers.storage.clone(hosts.source, hosts.pool, VolumeDefinition(volume=name, size=64 * MIB, format=fmt))
    if fmt == "raw":
        with open(info.path, "r+b") as stream:
            stream.seek(offset)
            stream.write(data)
    else:
        pattern = hosts.source_dir / f"{name}.pattern"
        pattern.write_bytes(data)
        subprocess.run(["qemu-io", "-f", fmt, "-c", f"write -s {pattern} {offset} {len(data)}", info.path],
                       check=True, capture_output=True)  # fmt: skip
        pattern.unlink()
    return DiskAttachment(volume=name, datastore=hosts.pool, format=fmt)


def guest_bytes(path: Path, fmt: str, offset: int, length: int, scratch: Path) -> bytes:
    """What the guest reads at ``offset`` of the disk image ``path``."""
    raw = path
    if fmt != "raw":
        raw = scratch / f"{path.name}.raw"
        subprocess.run(["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", str(path), str(raw)], check=True,
                       capture_output=True)  # fmt: skip
    with raw.open("rb") as stream:
        stream.seek(offset)
        return stream.read(length)


def a_vm(prefix: str, *disks: DiskAttachment) -> VMDefinition:
    name = f"{prefix}-mig-{uuid.uuid4().hex[:6]}"
    return VMDefinition(name=name, uuid=str(uuid.uuid4()), vcpu=1, memory=128 * MIB, disks=disks, owner=OWNER)


def assert_moved(drivers: Drivers, hosts: Hosts, vm: VMDefinition, *, live: bool) -> None:
    assert domain_state(hosts.target, vm.name) == ("running (migrated)" if live else "running (booted)")
    assert domain_state(hosts.source, vm.name) is None
    assert vm.uuid in {status.uuid for status in drivers.monitoring.probe_vms(hosts.target)}
    assert vm.uuid not in {status.uuid for status in drivers.monitoring.probe_vms(hosts.source)}
    # Idempotent: done again, it finds the VM on the target and leaves it there.
    again = drivers.virt.migrate(hosts.source, hosts.target, vm, live=live)
    assert (again.uuid, again.state) == (vm.uuid, VMLiveState.RUNNING)
    with pytest.raises(NotFoundError):
        drivers.virt.poll(hosts.source, vm.uuid)
    assert domain_state(hosts.target, vm.name) == ("running (migrated)" if live else "running (booted)")


def test_live_migration_between_two_daemons_moves_a_running_vm_and_its_disk(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """QEMU moves the memory and, the target lacking the volume, the disk (libvirt creates the volume in the
    target's pool); the domain keeps running throughout ("migrated", not "booted", on the target)."""
    data = os.urandom(MIB)
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", data, 8 * MIB))
        drivers.virt.deploy(hosts.source, vm)
        moved = drivers.virt.migrate(hosts.source, hosts.target, vm, live=True)
        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        assert not (hosts.source_dir / "disk0").exists()
        assert guest_bytes(hosts.target_dir / "disk0", "raw", 8 * MIB, MIB, tmp_path) == data
        assert "disk0" in drivers.storage.monitor(hosts.target, hosts.pool).volumes
        assert_moved(drivers, hosts, vm, live=True)


def test_cold_migration_between_two_daemons_copies_the_disks_sparse_and_restarts_the_vm(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """Stopped on the source, its raw and qcow2 volumes streamed to the target (holes stay holes), defined and
    started there ("booted"), then removed from the source."""
    raw_data, qcow2_data = os.urandom(MIB), os.urandom(MIB)
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", raw_data, 8 * MIB),
                  a_disk(drivers, hosts, "disk1", "qcow2", qcow2_data, 16 * MIB))  # fmt: skip
        drivers.virt.deploy(hosts.source, vm)
        moved = drivers.virt.migrate(hosts.source, hosts.target, vm, live=False)
        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        assert sorted(p.name for p in hosts.source_dir.iterdir()) == []
        raw, qcow2 = hosts.target_dir / "disk0", hosts.target_dir / "disk1"
        assert guest_bytes(raw, "raw", 8 * MIB, MIB, tmp_path) == raw_data
        assert guest_bytes(qcow2, "qcow2", 16 * MIB, MIB, tmp_path) == qcow2_data
        assert raw.stat().st_size == 64 * MIB and raw.stat().st_blocks * 512 < 8 * MIB  # the holes were not sent
        volumes = drivers.storage.monitor(hosts.target, hosts.pool).volumes
        assert (volumes["disk0"].format, volumes["disk1"].format) == ("raw", "qcow2")
        assert volumes["disk1"].capacity == 64 * MIB
        assert_moved(drivers, hosts, vm, live=False)


def test_migration_on_shared_storage_moves_the_vm_and_leaves_the_disk_in_place(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """Both pools are one directory: the target sees the volume, so nothing is copied and, above all, the
    source's "copy" (the same file) is not deleted. libvirt refuses a live migration here as unsafe (to it, a
    disk on a local filesystem is not shared, and QEMU is not asked to copy it): the driver migrates cold."""
    data = os.urandom(MIB)
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path, shared=True) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", data, 8 * MIB))
        drivers.virt.deploy(hosts.source, vm)
        inode = (hosts.source_dir / "disk0").stat().st_ino
        moved = drivers.virt.migrate(hosts.source, hosts.target, vm, live=True)
        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        assert (hosts.target_dir / "disk0").stat().st_ino == inode
        assert guest_bytes(hosts.target_dir / "disk0", "raw", 8 * MIB, MIB, tmp_path) == data
        assert_moved(drivers, hosts, vm, live=False)


def test_migration_to_a_host_without_the_datastore_is_refused_before_the_vm_stops(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path, target_pool=False) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", b"x", 0))
        drivers.virt.deploy(hosts.source, vm)
        for live in (True, False):
            with pytest.raises(PermanentError, match=f"no datastore {hosts.pool}"):
                drivers.virt.migrate(hosts.source, hosts.target, vm, live=live)
        assert domain_state(hosts.source, vm.name) == "running (booted)"
        assert domain_state(hosts.target, vm.name) is None
        assert (hosts.source_dir / "disk0").exists()


def test_live_migration_copies_the_cloud_init_seed_that_qemu_does_not(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """QEMU's disk migration skips read-only disks: the driver streams the seed ISO to the target first, else
    the target's QEMU could not open its CD-ROM."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        disk = a_disk(drivers, hosts, "disk0", "raw", b"x", 0)
        vm = dataclasses.replace(a_vm(prefix, disk), cloud_init=CloudInitData(user_data="#cloud-config\n"))
        drivers.virt.deploy(hosts.source, vm)
        seed = seed_volume_name(vm.name)
        iso = (hosts.source_dir / seed).read_bytes()
        drivers.virt.migrate(hosts.source, hosts.target, vm, live=True)
        assert (hosts.target_dir / seed).read_bytes() == iso
        assert sorted(p.name for p in hosts.source_dir.iterdir()) == []
        assert_moved(drivers, hosts, vm, live=True)


def test_a_live_migration_refers_to_the_targets_own_combined_filter(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """Each host names a NIC's combined filter on its own. With the digest narrowed to one bit, the target
    already holds another set's filter under the name the source gave this NIC's set, so this set's filter is
    named otherwise there: the migrated domain must refer to that one, never to the other set's (other rules)."""
    network, virt = drivers.network, drivers.virt
    bits = (network.nic_filter_bits, virt.nic_filter_bits)
    groups = [f"{prefix}-mg{index}" for index in range(4)]
    pairs = [(a, b) for i, a in enumerate(groups) for b in groups[i + 1 :]]
    ours, theirs = next(
        (x, y) for x in pairs for y in pairs if x < y and nic_filter_name(x, 0, 1) == nic_filter_name(y, 0, 1)
    )
    lan = f"{prefix}-mlan"
    subnet = 100 + os.getpid() % 100
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = dataclasses.replace(
            a_vm(prefix),
            nics=(NicDefinition(network=lan, mac=f"52:54:00:6e:{subnet:02x}:01", security_groups=ours),),
        )
        other = NicDefinition(network=lan, mac=f"52:54:00:6e:{subnet:02x}:02", security_groups=theirs)
        try:
            network.nic_filter_bits = virt.nic_filter_bits = 1
            status = network.create(hosts.source, NetworkDefinition(
                name=lan, mode="isolated", cidr=f"10.214.{subnet}.0/24", gateway=f"10.214.{subnet}.1",
                range_first=f"10.214.{subnet}.100", range_last=f"10.214.{subnet}.200"))  # fmt: skip
            # The peer's segment: the source's bridge, as the switch between two hosts would give it.
            xml = f"<network><name>{lan}</name><forward mode='bridge'/><bridge name='{status.bridge}'/></network>"
            drivers.connections.get(libvirtd_peer.uri).networkCreateXML(xml)
            for host in (hosts.source, hosts.target):
                for group in groups:
                    network.update_sg(host, SecurityGroupDefinition(name=group, rules=()))
            taken = nic_filter_name(ours, 0, 1)
            network.pre(hosts.target, str(uuid.uuid4()), other)  # the other set's filter takes the name first
            network.pre(hosts.source, vm.uuid, vm.nics[0])
            virt.deploy(hosts.source, vm)
            assert filter_of(hosts.source, vm.name) == taken
            network.pre(hosts.target, vm.uuid, vm.nics[0])  # the move prepares the NIC on the target first
            moved = virt.migrate(hosts.source, hosts.target, vm, live=True)
            assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
            assert domain_state(hosts.target, vm.name) == "running (migrated)"
            on_target = filter_of(hosts.target, vm.name)
            assert on_target != taken
            assert filter_includes(hosts.target, on_target) == sorted(ours)
            assert filter_includes(hosts.target, taken) == sorted(theirs)
            domain = drivers.connections.get(hosts.target.uri).lookupByUUIDString(vm.uuid)
            assert domain_facts(domain) == (OWNER, (vm.nics[0].mac,))  # the rest of the definition came along
            inactive = ET.fromstring(virsh(hosts.target.uri, "dumpxml", "--inactive", vm.name).stdout)
            assert inactive.find("./devices/interface/filterref").get("filter") == on_target  # type: ignore[union-attr]
        finally:
            network.nic_filter_bits, virt.nic_filter_bits = bits
            for host in (hosts.source, hosts.target):
                virsh(host.uri, "destroy", vm.name)
                virsh(host.uri, "undefine", vm.name)
                for name in virsh(host.uri, "nwfilter-list").stdout.split():
                    if name.startswith("nebctl-nic-") and prefix in virsh(host.uri, "nwfilter-dumpxml", name).stdout:
                        virsh(host.uri, "nwfilter-undefine", name)
                for group in groups:
                    virsh(host.uri, "nwfilter-undefine", group)
                virsh(host.uri, "net-destroy", lan)
                virsh(host.uri, "net-undefine", lan)


def filter_of(host: HostRef, name: str) -> str:
    """The filter the domain's (first) NIC refers to, as virsh shows the running domain."""
    domain = ET.fromstring(virsh(host.uri, "dumpxml", name).stdout)
    return str(domain.find("./devices/interface/filterref").get("filter"))  # type: ignore[union-attr]


def filter_includes(host: HostRef, name: str) -> list[str]:
    document = ET.fromstring(virsh(host.uri, "nwfilter-dumpxml", name).stdout)
    return sorted(str(ref.get("filter")) for ref in document.findall("./filterref"))


def nebctl(root: Path, *args: str, expected: int = 0) -> str:
    command = [str(NEBCTL), "--db", f"sqlite:///{root / 'state.db'}", "--config", str(root / "config.yaml"), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=root)
    assert result.returncode == expected, (
        f"nebctl {' '.join(args)} exited {result.returncode}, expected {expected}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


def test_nebctl_apply_migrates_a_vm_whose_placement_host_changes(
    libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """Through nebctl itself: a stack of two Hosts (the two daemons) and a VM placed on the first; moving its
    ``placement.host`` to the second plans a migration, and ``apply`` leaves the domain running on the second
    daemon only. The VM runs, so the planner asks for a live migration: the domain on the second daemon says it
    arrived by migration, not by a boot."""
    stack, vm_name = f"{prefix}-e2e", f"{prefix}-e2e-vm"
    source, target = HostRef(f"{prefix}-a", libvirtd.uri), HostRef(f"{prefix}-b", libvirtd_peer.uri)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (tmp_path / "config.yaml").write_text("shutdown_timeout: 1s\n")

    def write(host: HostRef) -> None:
        documents = [
            f"apiVersion: nebctl/v1\nkind: Host\nmetadata: {{name: {h.name}}}\nspec: {{uri: '{h.uri}'}}\n"
            for h in (source, target)
        ]
        documents.append(
            f"apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {{name: {vm_name}}}\n"
            f"spec: {{vcpu: 1, memory: 128Mi, placement: {{host: {host.name}}}}}\n"
        )
        (manifests / "stack.yaml").write_text("---\n".join(documents))

    with exclusive_objects():
        try:
            write(source)
            nebctl(tmp_path, "apply", "-f", str(manifests), "--stack", stack, "--yes")
            assert domain_state(source, vm_name) == "running (booted)"
            assert domain_state(target, vm_name) is None

            write(target)
            plan = nebctl(tmp_path, "diff", "-f", str(manifests), "--stack", stack, expected=2)
            assert f"moves from {source.name} to {target.name}" in plan, plan
            nebctl(tmp_path, "apply", "-f", str(manifests), "--stack", stack, "--yes")
            assert domain_state(target, vm_name) == "running (migrated)"
            assert domain_state(source, vm_name) is None
            # Converged: the record says the second host, and the probes find the VM there and only there.
            nebctl(tmp_path, "diff", "-f", str(manifests), "--stack", stack, expected=0)

            nebctl(tmp_path, "destroy", "--stack", stack, "--yes")
            assert domain_state(target, vm_name) is None
        finally:
            for host in (source, target):
                virsh(host.uri, "destroy", vm_name)
                virsh(host.uri, "undefine", vm_name)


def test_a_vm_with_a_shared_and_a_local_disk_moves_only_the_local_one(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """One disk on a datastore both daemons share, one on a datastore of the source's own: only the second is
    copied and removed from the source; the shared one is never copied onto itself (QEMU's disk migration is
    told which disks to copy; here libvirt then refuses the live migration as unsafe, and it goes cold)."""
    shared_data, local_data = os.urandom(MIB), os.urandom(MIB)
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path, shared=True) as shared:
        local = Hosts(shared.source, shared.target, f"{shared.pool}l", tmp_path / "local-a", tmp_path / "local-b")
        try:
            for host, directory in ((local.source, local.source_dir), (local.target, local.target_dir)):
                drivers.storage.create_datastore(host, DatastoreDefinition(local.pool, str(directory)))
            vm = a_vm(prefix, a_disk(drivers, shared, "disk0", "raw", shared_data, 8 * MIB),
                      a_disk(drivers, local, "disk1", "raw", local_data, 8 * MIB))  # fmt: skip
            drivers.virt.deploy(shared.source, vm)
            inode = (shared.source_dir / "disk0").stat().st_ino
            drivers.virt.migrate(shared.source, shared.target, vm, live=True)
            assert (shared.target_dir / "disk0").stat().st_ino == inode
            assert guest_bytes(shared.target_dir / "disk0", "raw", 8 * MIB, MIB, tmp_path) == shared_data
            assert not (local.source_dir / "disk1").exists()
            assert guest_bytes(local.target_dir / "disk1", "raw", 8 * MIB, MIB, tmp_path) == local_data
            assert_moved(drivers, shared, vm, live=False)
        finally:
            for host in (local.source, local.target):
                for name in virsh(host.uri, "list", "--all", "--name").stdout.split():
                    if name.startswith(prefix):
                        virsh(host.uri, "destroy", name)
                        virsh(host.uri, "undefine", name)
                with contextlib.suppress(DriverError):
                    for volume in drivers.storage.monitor(host, local.pool).volumes:
                        drivers.storage.delete(host, local.pool, volume)
                    drivers.storage.delete_datastore(host, local.pool)


# --- a migration killed at any point, then done again -----------------------------------------------------
#
# The states a killed migration leaves are made by hand (through virsh, the files and the drivers' other
# actions), then the migration is done again; last, one is really killed (SIGKILL) in the middle of a copy.
# Every retry must end with the VM on the target only, its disks there byte for byte the VM's, and nothing
# left on the source.


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(MIB):
            sha.update(chunk)
    return sha.hexdigest()


def digests(directory: Path, *names: str) -> dict[str, str]:
    return {name: digest(directory / name) for name in names}


def stop_for_migration(hosts: Hosts, vm: VMDefinition) -> None:
    """What a cold migration does to the source before it copies: note in the domain that it ran, stop it."""
    note = f"<migration target='{hosts.target.uri}' running='yes'/>"
    result = virsh(hosts.source.uri, "metadata", vm.name, MIGRATION_NAMESPACE, "--config", "--key",
                   MIGRATION_PREFIX, "--set", note)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert virsh(hosts.source.uri, "destroy", vm.name).returncode == 0


def leave_on_target(hosts: Hosts, name: str, left: str) -> None:
    """The target's volume ``name`` as an earlier try left it: ``complete`` (the source's file, copied),
    ``truncated`` (the source's size, its first half written: a copy killed halfway) or ``foreign`` (another
    file of that name, of another size)."""
    source, target = hosts.source_dir / name, hosts.target_dir / name
    if left == "complete":
        subprocess.run(["cp", "--sparse=always", str(source), str(target)], check=True)
    elif left == "truncated":
        size = source.stat().st_size
        with source.open("rb") as reader, target.open("wb") as writer:
            writer.truncate(size)
            writer.write(reader.read(size // 2))
    else:
        target.write_bytes(os.urandom(MIB))
    assert virsh(hosts.target.uri, "pool-refresh", hosts.pool).returncode == 0


def write_guest_bytes(path: Path, offset: int, data: bytes) -> None:
    """Bytes a guest writes to its raw disk, written from outside (the guests here run no OS)."""
    with path.open("r+b") as stream:
        stream.seek(offset)
        stream.write(data)


def assert_on_target_only(hosts: Hosts, vm: VMDefinition, expected: dict[str, str], state: str) -> None:
    assert domain_state(hosts.target, vm.name) == state
    assert domain_state(hosts.source, vm.name) is None
    assert digests(hosts.target_dir, *expected) == expected
    assert sorted(path.name for path in hosts.source_dir.iterdir()) == []


@pytest.mark.parametrize("left", ["truncated", "complete", "foreign"])
def test_a_cold_migration_killed_before_the_target_defined_the_vm_copies_the_disks_again(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path, left: str
) -> None:
    """Killed after stopping the VM, in the middle of a copy (``truncated``), after the copies but before the
    domain was defined on the target (``complete``), or with another volume of the name there (``foreign``):
    the source's disks are still the VM's, so the target's volumes are replaced by new copies, whatever they
    hold, and the VM is started on the target, as it ran before the first try (the source's note)."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", os.urandom(MIB), 48 * MIB),
                  a_disk(drivers, hosts, "disk1", "qcow2", os.urandom(MIB), 16 * MIB))  # fmt: skip
        drivers.virt.deploy(hosts.source, vm)
        expected = digests(hosts.source_dir, "disk0", "disk1")
        stop_for_migration(hosts, vm)
        for name in expected:
            leave_on_target(hosts, name, left)
            assert (left == "complete") == (digest(hosts.target_dir / name) == expected[name])

        moved = drivers.virt.migrate(hosts.source, hosts.target, vm, live=False)

        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        assert_on_target_only(hosts, vm, expected, "running (booted)")
        volumes = drivers.storage.monitor(hosts.target, hosts.pool).volumes
        assert (volumes["disk0"].format, volumes["disk1"].format) == ("raw", "qcow2")
        assert_moved(drivers, hosts, vm, live=False)


def test_a_live_migration_killed_while_qemu_copied_the_disk_is_done_again_live(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """The VM still runs on the source, a truncated volume of its disk on the target (the one libvirt created
    for QEMU's copy): it is deleted, and QEMU copies the disk into a new one."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", os.urandom(MIB), 48 * MIB))
        drivers.virt.deploy(hosts.source, vm)
        expected = digests(hosts.source_dir, "disk0")
        leave_on_target(hosts, "disk0", "truncated")

        moved = drivers.virt.migrate(hosts.source, hosts.target, vm, live=True)

        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        assert_on_target_only(hosts, vm, expected, "running (migrated)")
        assert_moved(drivers, hosts, vm, live=True)


@pytest.mark.parametrize("started", [False, True], ids=["defined", "started"])
def test_a_cold_migration_killed_after_the_target_defined_the_vm_keeps_the_targets_disk(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path, started: bool
) -> None:
    """Killed once the domain was defined on the target (the commit), before or after it started there, and
    before it was undefined on the source: the target's disk is the VM's now (here the guest wrote to it since
    the copy), so it is not copied again; the VM is started there, then removed from the source with its
    volume."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", os.urandom(MIB), 8 * MIB))
        drivers.virt.deploy(hosts.source, vm)
        stop_for_migration(hosts, vm)
        leave_on_target(hosts, "disk0", "complete")
        drivers.virt.deploy(hosts.target, vm, start=started)
        write_guest_bytes(hosts.target_dir / "disk0", 0, os.urandom(4096))
        expected = digests(hosts.target_dir, "disk0")
        assert expected != digests(hosts.source_dir, "disk0")

        moved = drivers.virt.migrate(hosts.source, hosts.target, vm, live=False)

        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        assert_on_target_only(hosts, vm, expected, "running (booted)")
        assert_moved(drivers, hosts, vm, live=False)


def test_a_vm_that_ran_again_on_the_source_after_a_killed_migration_is_migrated_from_the_source(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """The domain defined but stopped on the target, and running on the source (started again after the
    crash, and writing): the source's disk is the VM's, the target's a stale copy. The target's definition is
    removed and the migration done again from the source."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", os.urandom(MIB), 8 * MIB))
        drivers.virt.deploy(hosts.source, vm)
        leave_on_target(hosts, "disk0", "complete")
        drivers.virt.deploy(hosts.target, vm, start=False)
        write_guest_bytes(hosts.source_dir / "disk0", 0, os.urandom(4096))
        expected = digests(hosts.source_dir, "disk0")

        moved = drivers.virt.migrate(hosts.source, hosts.target, vm, live=False)

        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        assert_on_target_only(hosts, vm, expected, "running (booted)")
        assert_moved(drivers, hosts, vm, live=False)


def test_a_vm_running_on_both_hosts_is_refused_and_nothing_is_deleted(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """Running on both (the source started again while the target's ran): the driver cannot tell which disk is
    the VM's, and refuses; both domains and both volumes stay."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", os.urandom(MIB), 8 * MIB))
        drivers.virt.deploy(hosts.source, vm)
        leave_on_target(hosts, "disk0", "complete")
        drivers.virt.deploy(hosts.target, vm)
        with pytest.raises(ConflictError, match="runs on both"):
            drivers.virt.migrate(hosts.source, hosts.target, vm, live=False)
        for host, directory in ((hosts.source, hosts.source_dir), (hosts.target, hosts.target_dir)):
            assert domain_state(host, vm.name) == "running (booted)"
            assert (directory / "disk0").exists()


def test_a_migration_killed_after_undefining_the_source_removes_the_source_volumes(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """Killed after the domain left the source, before the source's volumes were deleted: the retry finds the
    domain on the target only and deletes the source's volumes of its disks, the target's untouched."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", os.urandom(MIB), 8 * MIB),
                  a_disk(drivers, hosts, "disk1", "qcow2", os.urandom(MIB), 16 * MIB))  # fmt: skip
        drivers.virt.deploy(hosts.source, vm)
        expected = digests(hosts.source_dir, "disk0", "disk1")
        stop_for_migration(hosts, vm)
        for name in expected:
            leave_on_target(hosts, name, "complete")
        drivers.virt.deploy(hosts.target, vm)
        assert virsh(hosts.source.uri, "undefine", vm.name).returncode == 0

        moved = drivers.virt.migrate(hosts.source, hosts.target, vm, live=False)

        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        assert_on_target_only(hosts, vm, expected, "running (booted)")
        assert_moved(drivers, hosts, vm, live=False)


def test_a_source_volume_the_target_lacks_is_never_deleted(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """The domain on the target only, but the target lacks the volume of its disk: the source's volume is the
    only copy of the disk, and stays."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_vm(prefix, a_disk(drivers, hosts, "disk0", "raw", os.urandom(MIB), 8 * MIB))
        drivers.virt.deploy(hosts.source, vm)
        expected = digests(hosts.source_dir, "disk0")
        drivers.virt.deploy(hosts.target, vm, start=False)
        drivers.virt.undeploy(hosts.source, vm.uuid)

        drivers.virt.migrate(hosts.source, hosts.target, vm, live=False)

        assert domain_state(hosts.target, vm.name) == "shut off (unknown)"
        assert digests(hosts.source_dir, "disk0") == expected
        assert not (hosts.target_dir / "disk0").exists()


@pytest.mark.parametrize("killed", [False, True], ids=["whole", "killed-after-define"])
def test_on_shared_storage_a_migration_and_its_retry_keep_the_disk_and_the_seed(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path, killed: bool
) -> None:
    """One directory for both pools: whether the migration runs whole or is killed after defining the domain on
    the target and done again, the disk is the same file throughout, never copied or deleted, and the
    cloud-init seed the target's domain uses stays (removing the source's domain does not remove it)."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path, shared=True) as hosts:
        disk = a_disk(drivers, hosts, "disk0", "raw", os.urandom(MIB), 8 * MIB)
        vm = dataclasses.replace(a_vm(prefix, disk), cloud_init=CloudInitData(user_data="#cloud-config\n"))
        drivers.virt.deploy(hosts.source, vm)
        inode, expected = (hosts.source_dir / "disk0").stat().st_ino, digests(hosts.source_dir, "disk0")
        if killed:
            stop_for_migration(hosts, vm)
            # The first try had refreshed the target's pool (seeing the shared seed) before defining it there.
            assert virsh(hosts.target.uri, "pool-refresh", hosts.pool).returncode == 0
            drivers.virt.deploy(hosts.target, vm, start=False)

        drivers.virt.migrate(hosts.source, hosts.target, vm, live=False)

        assert domain_state(hosts.target, vm.name) == "running (booted)"
        assert domain_state(hosts.source, vm.name) is None
        assert (hosts.target_dir / "disk0").stat().st_ino == inode
        assert digests(hosts.target_dir, "disk0") == expected
        assert (hosts.target_dir / seed_volume_name(vm.name)).exists()
        assert_moved(drivers, hosts, vm, live=False)


MIGRATING = """
import json, sys
from nebctl.drivers.libvirt import Connections, LibvirtVirtualization
from nebctl.drivers.types import DiskAttachment, HostRef, VMDefinition
request = json.loads(sys.argv[1])
vm = request["vm"]
vm["disks"] = tuple(DiskAttachment(**disk) for disk in vm["disks"])
driver = LibvirtVirtualization(connections=Connections(), migration_shutdown_timeout=0.5)
driver.migrate(HostRef(*request["source"]), HostRef(*request["target"]), VMDefinition(**vm), live=request["live"])
"""


def a_big_vm(drivers: Drivers, hosts: Hosts, prefix: str) -> VMDefinition:
    """A VM running on the source with a 192 MiB raw disk, 128 MiB of it random data: long enough to copy that
    a process copying it can be killed in the middle."""
    info = drivers.storage.clone(hosts.source, hosts.pool,
                                 VolumeDefinition(volume="disk0", size=192 * MIB, format="raw"))  # fmt: skip
    with open(info.path, "r+b") as stream:
        for _ in range(128):
            stream.write(os.urandom(MIB))
    vm = a_vm(prefix, DiskAttachment(volume="disk0", datastore=hosts.pool, format="raw"))
    drivers.virt.deploy(hosts.source, vm)
    return vm


def kill_migration(hosts: Hosts, vm: VMDefinition, *, live: bool, copying: Callable[[], bool]) -> None:
    """Migrate ``vm`` in another process and kill it (SIGKILL) as soon as ``copying()`` says its disk copy runs."""
    request = {
        "source": [hosts.source.name, hosts.source.uri],
        "target": [hosts.target.name, hosts.target.uri],
        "vm": {"name": vm.name, "uuid": vm.uuid, "vcpu": vm.vcpu, "memory": vm.memory,
               "disks": [dataclasses.asdict(disk) for disk in vm.disks]},
        "live": live,
    }  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", MIGRATING, json.dumps(request)])
    try:
        deadline = time.monotonic() + 60
        while not copying():
            assert child.poll() is None, f"the migration ended ({child.returncode}) before it was killed"
            assert time.monotonic() < deadline, "the disk copy did not start"
            time.sleep(0.001)
    finally:
        child.kill()
        child.wait()


def test_a_cold_migration_killed_in_the_middle_of_a_copy_loses_nothing_when_done_again(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """For real: the process copying the disk through libvirt's streams is killed (SIGKILL) as soon as the
    target's volume holds some of it. The migration done again leaves the whole disk on the target, the VM
    running there (it ran before), and nothing on the source."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_big_vm(drivers, hosts, prefix)
        expected = digests(hosts.source_dir, "disk0")
        copy = hosts.target_dir / "disk0"
        kill_migration(hosts, vm, live=False, copying=lambda: copy.exists() and copy.stat().st_blocks > 0)
        assert copy.stat().st_blocks * 512 < 128 * MIB, "killed too late: the copy was complete"
        assert domain_state(hosts.source, vm.name) == "shut off (destroyed)"
        assert domain_state(hosts.target, vm.name) is None

        moved = drivers.virt.migrate(hosts.source, hosts.target, vm, live=False)

        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        assert_on_target_only(hosts, vm, expected, "running (booted)")
        assert_moved(drivers, hosts, vm, live=False)


def test_a_live_migration_killed_in_the_middle_of_qemus_copy_loses_nothing_when_done_again(
    drivers: Drivers, libvirtd: LibvirtDaemon, libvirtd_peer: PeerDaemon, prefix: str, tmp_path: Path
) -> None:
    """For real: the process driving a live migration is killed (SIGKILL) once QEMU has copied part of the disk
    (the source's migration job says so). libvirt then ends the migration (the VM runs on in the source, the
    target's incoming domain goes) but leaves the volume it created on the target, partly written. The
    migration done again, as the executor retries it (a ``TemporaryError`` while the target's domain is not
    gone yet), moves the VM live with its whole disk."""
    with two_hosts(drivers, libvirtd, libvirtd_peer, prefix, tmp_path) as hosts:
        vm = a_big_vm(drivers, hosts, prefix)
        expected = digests(hosts.source_dir, "disk0")
        domain = drivers.connections.get(hosts.source.uri).lookupByUUIDString(vm.uuid)
        job: dict[str, int] = {}

        def copying() -> bool:
            job.update(domain.jobStats())
            return job.get("disk_processed", 0) > 0

        kill_migration(hosts, vm, live=True, copying=copying)
        assert job["disk_processed"] < job["disk_total"], "killed too late: the copy was complete"
        assert (hosts.target_dir / "disk0").exists()  # libvirt's, partly written

        for attempt in range(20):
            try:
                moved = drivers.virt.migrate(hosts.source, hosts.target, vm, live=True)
                break
            except TemporaryError:
                if attempt == 19:
                    raise
                time.sleep(0.5)

        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        assert_on_target_only(hosts, vm, expected, "running (migrated)")
        assert_moved(drivers, hosts, vm, live=True)


def test_between_two_test_hypervisors_the_migration_is_cold_and_recreates_the_missing_volumes(
    drivers: Drivers, prefix: str, tmp_path: Path
) -> None:
    """libvirt's test hypervisor cannot migrate (the driver goes cold) and keeps volumes as records without
    bytes: the target gets the disk's and the seed's records, the source loses them."""
    hosts = []
    for index in (1, 2):
        node = tmp_path / f"node{index}.xml"
        node.write_text("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>4</cores>"
                        "<threads>1</threads></cpu><memory>8388608</memory></node>")  # fmt: skip
        hosts.append(HostRef(f"test{index}", f"test://{node}"))
    source, target = hosts
    pool = f"{prefix}-mig"
    try:
        for host in hosts:
            drivers.storage.create_datastore(host, DatastoreDefinition(pool, f"/{pool}"))
        drivers.storage.clone(source, pool, VolumeDefinition(volume="disk0", size=MIB))
        vm = dataclasses.replace(a_vm(prefix, DiskAttachment(volume="disk0", datastore=pool)),
                                 cloud_init=CloudInitData(user_data="#cloud-config\n"))  # fmt: skip
        drivers.virt.deploy(source, vm)
        moved = drivers.virt.migrate(source, target, vm, live=True)
        assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
        volumes = drivers.storage.monitor(target, pool).volumes
        assert (volumes["disk0"].format, volumes["disk0"].capacity) == ("qcow2", MIB)
        assert seed_volume_name(vm.name) in volumes
        assert drivers.storage.monitor(source, pool).volumes == {}
        with pytest.raises(NotFoundError):
            drivers.virt.poll(source, vm.uuid)
        assert drivers.virt.migrate(source, target, vm, live=True).uuid == vm.uuid
    finally:
        for host in hosts:
            drivers.connections.drop(host.uri)  # the test hypervisor's state goes with its connection
