"""The libvirt driver's behaviour on libvirt's in-process test hypervisor (``test:///default``): idempotent
deploys, lifecycle, error conversion, storage, networks, monitoring and cold migration, with no daemon."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from pathlib import Path

import pytest

from nebctl.core.families import Family
from nebctl.drivers.errors import CapabilityError, NotFoundError, PermanentError, TemporaryError
from nebctl.drivers.libvirt import DRIVER_CLASSES, Connections, LibvirtVirtualization
from nebctl.drivers.libvirt.virtualization import guest_type
from nebctl.drivers.protocols import MonitoringDriver, NetworkDriver, StorageDriver, VirtualizationDriver
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import (
    DatastoreDefinition,
    DiskAttachment,
    HostRef,
    ImageImport,
    NetworkDefinition,
    NicDefinition,
    Ownership,
    VMDefinition,
    VolumeDefinition,
)
from tests.libvirt.conftest import TEST_URI, Drivers, make_image

pytestmark = pytest.mark.libvirt

OWNER = Ownership(stack="tests", kind="VirtualMachine", namespace="default", name="vm")


def vm_definition(name: str, **changes: object) -> VMDefinition:
    fields: dict[str, object] = {"name": name, "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, name)), "vcpu": 1,
                                 "memory": 128 * 1024**2, "owner": OWNER}  # fmt: skip
    fields.update(changes)
    return VMDefinition(**fields)  # type: ignore[arg-type]


def test_classes_implement_their_family_protocols() -> None:
    protocols = {
        Family.VIRTUALIZATION: VirtualizationDriver,
        Family.STORAGE: StorageDriver,
        Family.NETWORK: NetworkDriver,
        Family.MONITORING: MonitoringDriver,
    }
    for driver_class in DRIVER_CLASSES:
        assert driver_class.name == "libvirt"  # type: ignore[attr-defined]
        driver = driver_class(connections=Connections(events=False))  # type: ignore[call-arg]
        assert isinstance(driver, protocols[driver_class.family])  # type: ignore[attr-defined]


def test_deploy_twice_gives_one_domain_and_a_stopped_one_takes_the_new_definition(
    drivers: Drivers, test_host: HostRef, prefix: str
) -> None:
    vm = vm_definition(f"{prefix}-idem")
    first = drivers.virt.deploy(test_host, vm)
    second = drivers.virt.deploy(test_host, vm)
    assert first.uuid == second.uuid == vm.uuid
    assert second.state is VMLiveState.RUNNING
    assert second.owner == OWNER
    names = [status.name for status in drivers.monitoring.probe_vms(test_host)]
    assert names.count(vm.name) == 1

    drivers.virt.shutdown(test_host, vm.uuid, timeout=1)
    bigger = vm_definition(f"{prefix}-idem", memory=256 * 1024**2, vcpu=2)
    status = drivers.virt.deploy(test_host, bigger, start=False)
    assert (status.state, status.memory, status.vcpu) == (VMLiveState.STOPPED, 256 * 1024**2, 2)
    drivers.virt.undeploy(test_host, vm.uuid)


def test_lifecycle_and_not_found(drivers: Drivers, test_host: HostRef, prefix: str) -> None:
    vm = vm_definition(f"{prefix}-life")
    drivers.virt.deploy(test_host, vm)
    drivers.virt.suspend(test_host, vm.uuid)
    drivers.virt.suspend(test_host, vm.uuid)  # already paused: nothing to do
    assert drivers.virt.poll(test_host, vm.uuid).state is VMLiveState.SUSPENDED
    drivers.virt.resume(test_host, vm.uuid)
    drivers.virt.reboot(test_host, vm.uuid)
    assert drivers.virt.poll(test_host, vm.uuid).state is VMLiveState.RUNNING
    drivers.virt.cancel(test_host, vm.uuid)
    drivers.virt.cancel(test_host, vm.uuid)
    assert drivers.virt.poll(test_host, vm.uuid).state is VMLiveState.STOPPED
    drivers.virt.shutdown(test_host, vm.uuid, timeout=1)  # a stopped VM is left alone
    drivers.virt.undeploy(test_host, vm.uuid)
    with pytest.raises(NotFoundError) as caught:
        drivers.virt.poll(test_host, vm.uuid)
    assert caught.value.__cause__ is not None  # chained from the libvirtError
    with pytest.raises(NotFoundError):
        drivers.virt.undeploy(test_host, vm.uuid)


def test_an_unreachable_host_is_temporary_and_probes_as_error(drivers: Drivers) -> None:
    nowhere = HostRef(name="nowhere", uri="qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    with pytest.raises(TemporaryError):
        drivers.virt.poll(nowhere, str(uuid.uuid4()))
    probe = drivers.monitoring.probe_host(nowhere)
    assert probe.state is HostLiveState.ERROR
    assert probe.error


def test_guest_type_prefers_kvm_then_qemu() -> None:
    caps = """<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
      <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/>{kvm}</arch></guest></capabilities>"""
    assert guest_type(caps.format(kvm="<domain type='kvm'/>")) == ("kvm", "x86_64")
    assert guest_type(caps.format(kvm="")) == ("qemu", "x86_64")
    with pytest.raises(PermanentError):
        guest_type("<capabilities><host/></capabilities>")


def test_guest_type_follows_the_hosts_domain_type() -> None:
    caps = """<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
      <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/>{kvm}</arch></guest></capabilities>"""
    with_kvm = caps.format(kvm="<domain type='kvm'/>")
    assert guest_type(with_kvm, "qemu") == ("qemu", "x86_64")  # TCG although KVM is offered
    assert guest_type(with_kvm, "kvm") == ("kvm", "x86_64")
    assert guest_type(with_kvm, "auto") == ("kvm", "x86_64")
    with pytest.raises(PermanentError, match="domainType is kvm, but its hypervisor offers qemu for x86_64"):
        guest_type(caps.format(kvm=""), "kvm")


def test_deploy_on_a_host_that_wants_qemu_is_refused_by_the_test_hypervisor(drivers: Drivers, prefix: str) -> None:
    # libvirt's test driver offers only its own "test" domains: a host forced to qemu cannot define one, and
    # says why before anything is defined.
    host = HostRef(name="test", uri=TEST_URI, domain_type="qemu")
    vm = VMDefinition(name=f"{prefix}-forced", uuid=str(uuid.uuid4()), vcpu=1, memory=64 * 1024**2)
    with pytest.raises(PermanentError, match="domainType is qemu, but its hypervisor offers test"):
        drivers.virt.deploy(host, vm)
    with pytest.raises(NotFoundError):  # nothing was defined
        drivers.virt.poll(HostRef(name="test", uri=TEST_URI), vm.uuid)


def test_storage_import_clone_snapshot_and_delete(
    drivers: Drivers, test_host: HostRef, prefix: str, tmp_path: Path
) -> None:
    pool = f"{prefix}-pool"
    status = drivers.storage.create_datastore(test_host, DatastoreDefinition(name=pool, path=f"/{pool}"))
    assert status.total > 0
    assert drivers.storage.create_datastore(test_host, DatastoreDefinition(name=pool, path=f"/{pool}")).name == pool
    image = make_image(tmp_path / "base.qcow2", size="32M")
    digest = hashlib.sha256(image.read_bytes()).hexdigest()

    with pytest.raises(PermanentError, match="sha256"):
        drivers.storage.import_image(test_host, pool, ImageImport(volume="bad", source=str(image), sha256="0" * 64))
    imported = drivers.storage.import_image(
        test_host, pool, ImageImport(volume="base", source=image.as_uri(), sha256=digest)
    )
    assert (imported.format, imported.capacity, imported.sha256) == ("qcow2", 32 * 1024**2, digest)
    raw = drivers.storage.import_image(
        test_host, pool, ImageImport(volume="raw", source=str(make_image(tmp_path / "r.img", fmt="raw", size="1M")))
    )
    assert raw.format == "raw"

    overlay = drivers.storage.clone(test_host, pool, VolumeDefinition(volume="d1", size=64 * 1024**2, backing="base"))
    assert overlay.backing == imported.path
    assert overlay.capacity == 64 * 1024**2
    again = drivers.storage.clone(test_host, pool, VolumeDefinition(volume="d1", size=64 * 1024**2, backing="base"))
    assert again.path == overlay.path
    full = drivers.storage.clone(
        test_host, pool, VolumeDefinition(volume="d2", size=None, backing="base", clone="full")
    )
    assert full.backing is None
    blank = drivers.storage.clone(test_host, pool, VolumeDefinition(volume="d3", size=2 * 1024**2, format="raw"))
    assert blank.format == "raw"
    with pytest.raises(PermanentError, match="shrinking"):
        drivers.storage.resize(test_host, pool, "d1", 1024)
    assert drivers.storage.resize(test_host, pool, "d1", 64 * 1024**2).capacity == 64 * 1024**2
    snap = drivers.storage.snapshot(test_host, pool, "d1", "s1")
    assert snap.name == "d1@s1"

    monitored = drivers.storage.monitor(test_host, pool)
    assert set(monitored.volumes) == {"base", "raw", "d1", "d2", "d3", "d1@s1"}
    with pytest.raises(PermanentError):  # still holds volumes (a ConflictError)
        drivers.storage.delete_datastore(test_host, pool)
    for volume in monitored.volumes:
        drivers.storage.delete(test_host, pool, volume)
    with pytest.raises(NotFoundError):
        drivers.storage.delete(test_host, pool, "d1")
    drivers.storage.delete_datastore(test_host, pool)
    with pytest.raises(NotFoundError):
        drivers.storage.monitor(test_host, pool)


def test_network_leases_and_ownership(drivers: Drivers, test_host: HostRef, prefix: str) -> None:
    name = f"{prefix}-net"
    owner = Ownership(stack="tests", kind="Network", namespace="default", name="lan")
    definition = NetworkDefinition(name=name, mode="nat", cidr="10.99.0.0/24", gateway="10.99.0.1",
                                   range_first="10.99.0.100", range_last="10.99.0.200", owner=owner)  # fmt: skip
    assert drivers.network.create(test_host, definition).active
    assert drivers.network.create(test_host, definition).owner == owner
    nic = NicDefinition(network=name, mac="52:54:00:00:99:01", ip="10.99.0.10")
    drivers.network.pre(test_host, "vm", nic)
    drivers.network.pre(test_host, "vm", nic)
    assert drivers.network.monitor(test_host)[name].leases == {nic.mac: "10.99.0.10"}
    moved = NicDefinition(network=name, mac=nic.mac, ip="10.99.0.11")
    drivers.network.pre(test_host, "vm", moved)
    assert drivers.network.monitor(test_host)[name].leases == {nic.mac: "10.99.0.11"}
    with pytest.raises(PermanentError, match="reserved"):
        drivers.network.pre(test_host, "other", NicDefinition(network=name, mac="52:54:00:00:99:02", ip="10.99.0.11"))
    drivers.network.post(test_host, "vm", moved)
    drivers.network.clean(test_host, "vm", moved)
    assert drivers.network.monitor(test_host)[name].leases == {}
    drivers.network.delete(test_host, name)
    assert name not in drivers.network.monitor(test_host)
    with pytest.raises(NotFoundError):
        drivers.network.delete(test_host, name)


def test_security_groups_need_the_nwfilter_driver(drivers: Drivers, test_host: HostRef) -> None:
    from nebctl.drivers.types import SecurityGroupDefinition

    with pytest.raises(CapabilityError):  # the test hypervisor has no nwfilter support
        drivers.network.update_sg(test_host, SecurityGroupDefinition(name="nope"))


def test_monitoring_in_one_call_with_owners(drivers: Drivers, test_host: HostRef, prefix: str) -> None:
    vm = vm_definition(f"{prefix}-mon", vcpu=2)
    drivers.virt.deploy(test_host, vm)
    probe = drivers.monitoring.probe_host(test_host)
    assert probe.state is HostLiveState.ONLINE
    assert probe.cpus > 0 and probe.memory > 0
    assert 0.0 <= probe.cpu_usage <= 1.0
    statuses = {status.uuid: status for status in drivers.monitoring.probe_vms(test_host)}
    mine = statuses[vm.uuid]
    assert (mine.state, mine.vcpu, mine.memory, mine.owner) == (VMLiveState.RUNNING, 2, vm.memory, OWNER)
    drivers.virt.undeploy(test_host, vm.uuid)
    assert vm.uuid not in {status.uuid for status in drivers.monitoring.probe_vms(test_host)}


def test_lifecycle_events_reach_watchers(drivers: Drivers, test_host: HostRef, prefix: str) -> None:
    seen: list[tuple[str, str]] = []
    arrived = threading.Event()

    def record(uuid_: str, event: str) -> None:
        seen.append((uuid_, event))
        if event == "stopped":
            arrived.set()

    stop = drivers.monitoring.watch(test_host, record)
    assert stop is not None
    vm = vm_definition(f"{prefix}-events")
    try:
        drivers.virt.deploy(test_host, vm)
        drivers.virt.cancel(test_host, vm.uuid)
        assert arrived.wait(5), seen
        assert (vm.uuid, "started") in seen
    finally:
        stop()
        drivers.virt.undeploy(test_host, vm.uuid)


def test_cold_migration_between_two_test_hosts(drivers: Drivers, prefix: str, tmp_path: Path) -> None:
    node = tmp_path / "node.xml"
    node.write_text("<node><cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>4</cores>"
                    "<threads>1</threads></cpu><memory>8388608</memory></node>")  # fmt: skip
    source = HostRef(name="a", uri="test:///default")
    target = HostRef(name="b", uri=f"test://{node}")
    pool = DatastoreDefinition(name=f"{prefix}-mig", path=f"/{prefix}-mig")
    disk = VolumeDefinition(volume="disk", size=1024**2)
    for host in (source, target):
        drivers.storage.create_datastore(host, pool)
    drivers.storage.clone(source, pool.name, disk)  # local storage: the disk is on the source only
    vm = vm_definition(f"{prefix}-mig", disks=(DiskAttachment(volume="disk", datastore=pool.name),))
    drivers.virt.deploy(source, vm)
    try:
        moved = drivers.virt.migrate(source, target, vm, live=True)
        assert moved.state is VMLiveState.RUNNING
        assert drivers.virt.poll(target, vm.uuid).owner == OWNER
        with pytest.raises(NotFoundError):
            drivers.virt.poll(source, vm.uuid)
        # A retry after success finds the VM already moved.
        assert drivers.virt.migrate(source, target, vm).uuid == vm.uuid
        # The disk moved with it: the source no longer holds it, the target does.
        with pytest.raises(NotFoundError):
            drivers.storage.delete(source, pool.name, "disk")
        drivers.virt.undeploy(target, vm.uuid)
        drivers.storage.delete(target, pool.name, "disk")
    finally:
        for host in (source, target):
            with contextlib.suppress(NotFoundError):
                drivers.virt.undeploy(host, vm.uuid)
            with contextlib.suppress(NotFoundError):
                drivers.storage.delete(host, pool.name, "disk")
            drivers.storage.delete_datastore(host, pool.name)
        drivers.connections.drop(target.uri)


def test_cloud_init_seed_is_attached_and_removed(drivers: Drivers, test_host: HostRef, prefix: str) -> None:
    from nebctl.drivers.types import CloudInitData

    pool = f"{prefix}-ci"
    drivers.storage.create_datastore(test_host, DatastoreDefinition(name=pool, path=f"/{pool}"))
    drivers.storage.clone(test_host, pool, VolumeDefinition(volume="root", size=1024**2))
    vm = vm_definition(f"{prefix}-ci", disks=(DiskAttachment(volume="root", datastore=pool),),
                       cloud_init=CloudInitData(user_data="#cloud-config\npassword: secret\n"))  # fmt: skip
    drivers.virt.deploy(test_host, vm)
    assert f"{vm.name}-cidata.iso" in drivers.storage.monitor(test_host, pool).volumes
    drivers.virt.undeploy(test_host, vm.uuid)
    assert set(drivers.storage.monitor(test_host, pool).volumes) == {"root"}
    drivers.storage.delete(test_host, pool, "root")
    drivers.storage.delete_datastore(test_host, pool)


def test_default_construction_shares_the_process_connections() -> None:
    first, second = LibvirtVirtualization(), LibvirtVirtualization()
    assert first.connections is second.connections
