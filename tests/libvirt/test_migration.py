"""Migration between two real libvirt daemons: qemu:///system (tests/support/libvirtd.py) and the private peer
daemon of tests/support/libvirtd_peer.py, both QEMU/KVM on this machine; through the driver, and through
nebctl itself (a VM whose ``placement.host`` changes). Also, last, between two of libvirt's test hypervisors.

Each driver test gets a datastore (a dir pool of the same name) on both daemons: by default in two different
directories, as two hosts with local disks have, so a disk that moves is really copied (by QEMU during a live
migration, through libvirt's streams during a cold one) and removed from the source; with ``shared=True`` in
one directory, as on shared storage, where nothing may be copied or removed. Checks go through virsh and the
files, not through the driver under test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nebctl.drivers.errors import DriverError, NotFoundError, PermanentError
from nebctl.drivers.libvirt.seeds import seed_volume_name
from nebctl.drivers.states import VMLiveState
from nebctl.drivers.types import (
    CloudInitData,
    DatastoreDefinition,
    DiskAttachment,
    HostRef,
    Ownership,
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
    daemon only. The planner asks for a cold migration (the settings' shutdown_timeout bounds the graceful stop
    of a guest that has no OS to answer ACPI)."""
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
            assert domain_state(target, vm_name) == "running (booted)"
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
