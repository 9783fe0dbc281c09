"""The libvirt virtualization driver: domains defined from VM definitions and driven through their lifecycle.

Registered as ``libvirt`` for the virtualization family. Domains are keyed by the VM's deterministic uuid, so
``deploy`` run twice gives one domain. The guest type is the host's ``domain_type`` (the Host's
``virtualization.domainType``) when it names one, which the hypervisor must offer; with ``auto`` it follows
the host's capabilities: kvm where the hypervisor offers it, qemu (TCG) otherwise, and ``test`` on libvirt's
test driver. Forcing qemu is for hosts whose KVM cannot run the guest (some nested setups).
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, ClassVar, Self

import libvirt

from nebctl.core.families import Family
from nebctl.drivers import context
from nebctl.drivers.errors import ConflictError, PermanentError, TemporaryError
from nebctl.drivers.libvirt import images, migration, seeds
from nebctl.drivers.libvirt.common import DRIVER_NAME, LibvirtDriverBase, domain_facts, ignoring, live_state
from nebctl.drivers.libvirt.connections import Connections
from nebctl.drivers.libvirt.failures import error_code
from nebctl.drivers.libvirt.nicfilters import combined_filter, retargeted
from nebctl.drivers.libvirt.xmlbuild.domains import CdromElement, DomainElement
from nebctl.drivers.libvirt.xmlbuild.storage import VolumeElement
from nebctl.drivers.states import VMLiveState
from nebctl.drivers.types import HostRef, VMDefinition, VMStatus

POLL_INTERVAL = 0.2
KIB = 1024

_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", 0)
)
_NOT_RUNNING = (libvirt.VIR_ERR_OPERATION_INVALID,)
# What a live migration refuses with when it cannot be done (unsafe: a disk on storage libvirt does not take for
# shared); the driver then migrates cold.
_NO_LIVE_MIGRATION = (
    libvirt.VIR_ERR_NO_SUPPORT,
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
    libvirt.VIR_ERR_MIGRATE_UNSAFE,
)

log = logging.getLogger("nebctl.drivers.libvirt")


def guest_type(capabilities: str, wanted: str = "auto") -> tuple[str, str]:
    """(domain type, arch) for an hvm guest of the host's own architecture: ``wanted`` (kvm or qemu) if the
    host offers it, else an error; with ``auto``, kvm, else qemu, else test."""
    document = ET.fromstring(capabilities)
    host_arch = document.findtext("./host/cpu/arch") or "x86_64"
    offered: dict[str, set[str]] = {}
    for guest in document.findall("./guest"):
        if guest.findtext("./os_type") != "hvm":
            continue
        arch = guest.find("./arch")
        if arch is None:
            continue
        offered.setdefault(arch.get("name", ""), set()).update(
            domain.get("type", "") for domain in arch.findall("./domain")
        )
    arch_name = host_arch if host_arch in offered else next(iter(offered), host_arch)
    if wanted != "auto":
        if wanted in offered.get(arch_name, set()):
            return wanted, arch_name
        have = ", ".join(sorted(offered.get(arch_name, set()))) or "none"
        raise PermanentError(
            f"the host's virtualization.domainType is {wanted}, but its hypervisor offers {have} for {arch_name}",
            driver=DRIVER_NAME,
        )
    for domain_type in ("kvm", "qemu", "test"):
        if domain_type in offered.get(arch_name, set()):
            return domain_type, arch_name
    raise PermanentError(f"the host offers no hvm guest for {arch_name}", driver=DRIVER_NAME)


def domain_status(domain: libvirt.virDomain) -> VMStatus:
    state, reason = domain.state(0)
    _state, max_memory, memory, vcpus, _cpu_time = domain.info()
    owner, macs = domain_facts(domain)
    return VMStatus(
        uuid=domain.UUIDString(),
        name=domain.name(),
        state=live_state(state, reason),
        vcpu=int(vcpus),
        memory=int(max_memory) * KIB,
        memory_used=int(memory) * KIB if state == libvirt.VIR_DOMAIN_RUNNING else 0,
        owner=owner,
        macs=macs,
    )


def deployed_status(vm: VMDefinition, *, running: bool) -> VMStatus:
    """The status of a domain just defined from ``vm`` (and started when ``running``), without a round trip:
    every field is what was just written or what ``create`` just did. Deploy is the hot path of a large apply
    (bench/libvirt_apply.py): reading the status back was a quarter of its calls. A guest that fails later is
    drift, seen by the next probe."""
    memory = vm.memory // KIB * KIB  # what the domain XML holds: libvirt counts KiB
    return VMStatus(
        uuid=vm.uuid,
        name=vm.name,
        state=VMLiveState.RUNNING if running else VMLiveState.STOPPED,
        vcpu=vm.vcpu,
        memory=memory,
        memory_used=memory if running else 0,
        owner=vm.owner,
        macs=tuple(nic.mac.lower() for nic in vm.nics),
    )


class LibvirtVirtualization(LibvirtDriverBase):
    family: ClassVar[Family] = Family.VIRTUALIZATION
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"deploy", "shutdown", "cancel", "reboot", "suspend", "resume", "migrate", "live-migrate", "undeploy",
         "poll", "cloud-init"}
    )  # fmt: skip

    def __init__(self, *, connections: Connections | None = None, migration_shutdown_timeout: float = 60.0) -> None:
        super().__init__(connections=connections)
        self.migration_shutdown_timeout = migration_shutdown_timeout
        self._guest_types: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_context(cls, context: Any) -> Self:
        """As the base class builds it; a cold migration's graceful stop lasts the settings' ``shutdown_timeout``
        (the executor's own shutdowns do too)."""
        driver = super().from_context(context)
        driver.migration_shutdown_timeout = float(context.settings.shutdown_timeout)
        return driver

    def _guest(self, host: HostRef, connection: libvirt.virConnect) -> tuple[str, str]:
        key = (host.uri, host.domain_type)
        with self._lock:
            cached = self._guest_types.get(key)
        if cached is None:
            cached = guest_type(connection.getCapabilities(), host.domain_type)
            with self._lock:
                self._guest_types[key] = cached
        return cached

    @staticmethod
    def _lookup(connection: libvirt.virConnect, uuid: str) -> libvirt.virDomain:
        return connection.lookupByUUIDString(uuid)

    # --- define and start ---------------------------------------------------------------------------------

    def deploy(self, host: HostRef, vm: VMDefinition, *, start: bool = True) -> VMStatus:
        with self._using(host, f"deploy {vm.name}") as connection:
            existing: libvirt.virDomain | None
            try:
                existing = self._lookup(connection, vm.uuid)
            except libvirt.libvirtError as error:
                if error_code(error) != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                existing = None
            if existing is not None and existing.isActive():
                # A running domain keeps its definition: changes that need a restart are the executor's
                # (shutdown, then deploy again).
                return domain_status(existing)
            domain_type, arch = self._guest(host, connection)
            seed = self._seed(connection, vm) if vm.cloud_init is not None else None
            element = DomainElement.from_vm(
                vm,
                domain_type=domain_type,
                arch=arch,
                seed=seed,
                nic_filters=tuple(
                    combined_filter(connection, nic.security_groups, bits=self.nic_filter_bits)[0] for nic in vm.nics
                ),
            )
            domain = connection.defineXML(element.to_xml())
            if start:
                # Known not to run (looked up above): no isActive round trip first. Another writer starting it
                # meanwhile is the outcome we want; any other refusal is raised.
                try:
                    domain.create()
                except libvirt.libvirtError as error:
                    if error_code(error) not in _NOT_RUNNING or not domain.isActive():
                        raise
            return deployed_status(vm, running=start)

    def _seed(self, connection: libvirt.virConnect, vm: VMDefinition) -> CdromElement:
        """Build the NoCloud ISO and (re)place it as a volume next to the VM's first disk."""
        assert vm.cloud_init is not None
        if not vm.disks:
            raise PermanentError(f"{vm.name}: cloud-init needs a disk, whose datastore holds the seed",
                                 driver=DRIVER_NAME)  # fmt: skip
        pool_name = vm.disks[0].datastore
        volume_name = seeds.seed_volume_name(vm.name)
        pool = connection.storagePoolLookupByName(pool_name)
        with seeds.temporary_directory() as directory:
            iso = seeds.build_seed(vm.cloud_init, instance_id=vm.uuid, hostname=vm.name, directory=Path(directory))
            with ignoring(libvirt.VIR_ERR_NO_STORAGE_VOL):
                pool.storageVolLookupByName(volume_name).delete(0)
            size = iso.stat().st_size
            volume = pool.createXML(VolumeElement(name=volume_name, capacity=size, format="raw").to_xml(), 0)
            images.upload(connection, volume, iso)
        return CdromElement(pool=pool_name, volume=volume_name)

    # --- stop ---------------------------------------------------------------------------------------------

    def shutdown(self, host: HostRef, uuid: str, *, timeout: float) -> bool:
        with self._using(host, f"shutdown {uuid}") as connection:
            domain = self._lookup(connection, uuid)
            if not domain.isActive():
                return True
            state, _reason = domain.state(0)
            if state != libvirt.VIR_DOMAIN_PAUSED:  # a paused guest cannot answer ACPI
                with ignoring(*_NOT_RUNNING):
                    domain.shutdown()
                if self._wait_stopped(domain, timeout):
                    return True
            with ignoring(*_NOT_RUNNING):
                domain.destroy()
            return False

    @staticmethod
    def _wait_stopped(domain: libvirt.virDomain, timeout: float) -> bool:
        call = context.current()
        deadline = time.monotonic() + min(timeout, call.remaining(timeout))
        while True:
            if not domain.isActive():
                return True
            if time.monotonic() >= deadline or call.cancelled.is_set():
                return False
            call.cancelled.wait(POLL_INTERVAL)

    def cancel(self, host: HostRef, uuid: str) -> None:
        with self._using(host, f"cancel {uuid}") as connection:
            domain = self._lookup(connection, uuid)
            if domain.isActive():
                with ignoring(*_NOT_RUNNING):
                    domain.destroy()

    @staticmethod
    def _require_active(domain: libvirt.virDomain, action: str) -> None:
        # Checked here because drivers word "not running" differently (the test driver: an internal error).
        if not domain.isActive():
            raise ConflictError(f"cannot {action} {domain.name()}: it is not running", driver=DRIVER_NAME)

    def reboot(self, host: HostRef, uuid: str) -> None:
        with self._using(host, f"reboot {uuid}") as connection:
            domain = self._lookup(connection, uuid)
            self._require_active(domain, "reboot")
            domain.reboot(0)

    def suspend(self, host: HostRef, uuid: str) -> None:
        with self._using(host, f"suspend {uuid}") as connection:
            domain = self._lookup(connection, uuid)
            self._require_active(domain, "suspend")
            if domain.state(0)[0] != libvirt.VIR_DOMAIN_PAUSED:
                domain.suspend()

    def resume(self, host: HostRef, uuid: str) -> None:
        with self._using(host, f"resume {uuid}") as connection:
            domain = self._lookup(connection, uuid)
            self._require_active(domain, "resume")
            if domain.state(0)[0] == libvirt.VIR_DOMAIN_PAUSED:
                domain.resume()

    def undeploy(self, host: HostRef, uuid: str) -> None:
        with self._using(host, f"undeploy {uuid}") as connection:
            domain = self._lookup(connection, uuid)
            seeds_attached = self._seed_volumes(domain)
            self._undefine(domain)
            for pool_name, volume_name in seeds_attached:
                with ignoring(libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
                    connection.storagePoolLookupByName(pool_name).storageVolLookupByName(volume_name).delete(0)

    @staticmethod
    def _undefine(domain: libvirt.virDomain) -> None:
        """Stop the domain and remove its definition; its volumes, the seed's too, stay."""
        if domain.isActive():
            with ignoring(*_NOT_RUNNING):
                domain.destroy()
        try:
            domain.undefineFlags(_UNDEFINE_FLAGS)
        except libvirt.libvirtError as error:
            # Drivers without NVRAM or checkpoints (the test driver) refuse the flags they do not know.
            if error_code(error) not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                raise
            domain.undefine()

    @staticmethod
    def _seed_volumes(domain: libvirt.virDomain) -> list[tuple[str, str]]:
        """The cloud-init seeds this driver attached: they are its own, unlike the VM's disks."""
        document = ET.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        found = []
        for source in document.findall("./devices/disk[@device='cdrom']/source"):
            pool, volume = source.get("pool"), source.get("volume")
            if pool and volume and volume.endswith("-cidata.iso"):
                found.append((pool, volume))
        return found

    # --- migrate and poll ---------------------------------------------------------------------------------

    def migrate(self, source: HostRef, target: HostRef, vm: VMDefinition, *, live: bool = False) -> VMStatus:
        """Move the domain and the volumes of its disks to ``target`` (see ``migration`` for which volumes move:
        those of the datastores the two hosts do not share).

        Live when asked, the domain runs and the hypervisor can: QEMU moves the memory and those disks (libvirt
        creates their volumes in the target's pools); the read-only seed is copied first, as QEMU's disk
        migration skips it. Otherwise cold: stop the domain on the source, copy those volumes, define (and
        start, when it ran) the domain on the target from ``vm``, then undefine it on the source. Either way
        the source's copies of the moved volumes are deleted at the end. Everything that can refuse (a
        datastore the target lacks) is checked before anything stops or moves.

        Safe to do again after a crash at any point (the executor resumes the action): the domain's persistent
        definition on the target is the commit. Until it exists, the source's domain and volumes are the VM's,
        and the volumes an earlier try left on the target, complete or not, are replaced. Once it exists, the
        target's are: the retry starts the domain there if the earlier try had stopped it running, undefines
        it on the source and removes the source's volumes that the target holds. Done again after the move, it
        returns the domain's status on the target.
        """
        if source.uri == target.uri:
            return self.poll(target, vm.uuid)
        with self._using(source, f"migrate {vm.name}") as source_connection:
            domain = self._find(source_connection, vm.uuid)
            disks = migration.volume_disks(domain) if domain is not None else []
        with self._using(target, f"migrate {vm.name}: find it") as target_connection:
            moved = self._find(target_connection, vm.uuid)
            try:
                # Defined only by a live migration's end: one runs, or a killed one's domain is not gone yet.
                transient = moved is not None and not moved.isPersistent()
            except libvirt.libvirtError as error:
                if error_code(error) != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                transient = True  # such a domain, gone since it was found
            if transient:
                raise TemporaryError(f"{vm.name} is being migrated to {target.name}", driver=DRIVER_NAME)
            if domain is None and moved is not None:
                disks = migration.volume_disks(moved)  # moved: the source may still hold the volumes of its disks
        if domain is None and moved is None:
            return self.poll(target, vm.uuid)  # not found
        with (
            self._using(source, f"migrate {vm.name}: datastores") as source_connection,
            self._using(target, f"migrate {vm.name}: datastores") as target_connection,
        ):
            shared = migration.shared_pools(source_connection, target_connection, disks, target.name)
        separate = [disk for disk in disks if disk.pool not in shared]
        if domain is None or (moved is not None and self._moved(source, target, vm, domain, moved)):
            start = domain is not None and self._stopped_running(source, target, vm, domain)
            self._complete(source, target, vm, separate, start=start)
            return self.poll(target, vm.uuid)
        # Not moved yet: the source's domain and volumes are the VM's.
        was_running = bool(domain.isActive())
        to_copy = separate
        if live and was_running:
            with self._using(target, f"migrate {vm.name}: earlier copies") as target_connection:
                migration.discard_copies(target_connection, [disk for disk in separate if not disk.read_only])
            self._copy(source, target, vm, [disk for disk in separate if disk.read_only])
            with self._using(source, f"live-migrate {vm.name} to {target.name}") as source_connection:
                copied = [disk.device for disk in separate if not disk.read_only]
                moved_live = self._migrate_live(source_connection, domain, target, vm, copy_disks=copied)
            if moved_live:
                self._complete(source, target, vm, separate, start=False)
                return self.poll(target, vm.uuid)
            to_copy = [disk for disk in separate if not disk.read_only]  # the others were copied above
        if was_running:
            with self._using(source, f"migrate {vm.name}: note that it runs"):
                migration.note_running(domain, target.uri)
            self.shutdown(source, vm.uuid, timeout=self.migration_shutdown_timeout)
        else:
            was_running = self._stopped_running(source, target, vm, domain)
        self._copy(source, target, vm, to_copy)
        status = self.deploy(target, vm, start=was_running)  # the commit
        self._complete(source, target, vm, separate, start=False)
        return status

    def _find(self, connection: libvirt.virConnect, uuid: str) -> libvirt.virDomain | None:
        try:
            return self._lookup(connection, uuid)
        except libvirt.libvirtError as error:
            if error_code(error) != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            return None

    def _stopped_running(self, source: HostRef, target: HostRef, vm: VMDefinition, domain: libvirt.virDomain) -> bool:
        """Whether an earlier try of a cold migration to ``target`` stopped the (now stopped) domain running."""
        with self._using(source, f"migrate {vm.name}: read its note"):
            return not domain.isActive() and migration.noted_running(domain, target.uri)

    def _moved(
        self, source: HostRef, target: HostRef, vm: VMDefinition, domain: libvirt.virDomain, moved: libvirt.virDomain
    ) -> bool:
        """Whether the domain defined on both hosts is the target's now: the source's has not run since the
        target's was defined (stopped, or paused at the end of a live migration). When the source's runs and the
        target's is stopped, the source's has run since: the target's definition is removed, its disks are stale
        copies that the migration replaces."""
        with self._using(target, f"migrate {vm.name}: compare its domains on {source.name} and"):
            if not domain.isActive():
                return True
            state, reason = domain.state(0)
            if moved.isActive():
                if state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION:
                    return True  # a live migration done but for its last step on the source
                raise ConflictError(f"{vm.name} runs on both {source.name} and {target.name}: stop the one that "
                                    "must not run, then migrate again", driver=DRIVER_NAME)  # fmt: skip
            self._undefine(moved)
            return False

    def _complete(
        self, source: HostRef, target: HostRef, vm: VMDefinition, separate: list[migration.VolumeDisk], *, start: bool
    ) -> None:
        """The domain is defined on the target: start it there when asked, undefine it on the source, then remove
        the source's volumes of ``separate`` (the disks in datastores the hosts do not share) the target holds."""
        if start:
            self.deploy(target, vm, start=True)
        with self._using(source, f"migrate {vm.name}: undefine it") as source_connection:
            domain = self._find(source_connection, vm.uuid)
            if domain is not None:
                self._undefine(domain)
        with (
            self._using(source, f"migrate {vm.name}: remove the moved disks") as source_connection,
            self._using(target, f"migrate {vm.name}: the disks it moved") as target_connection,
        ):
            migration.remove_moved(source_connection, target_connection, separate)

    def _copy(self, source: HostRef, target: HostRef, vm: VMDefinition, disks: list[migration.VolumeDisk]) -> None:
        for disk in disks:
            with (
                self._using(source, f"migrate {vm.name}: read disk {disk.volume}") as source_connection,
                self._using(target, f"migrate {vm.name}: copy disk {disk.volume}") as target_connection,
            ):
                migration.copy_volume(source_connection, target_connection, disk, target.name)

    def _migrate_live(
        self,
        connection: libvirt.virConnect,
        domain: libvirt.virDomain,
        target: HostRef,
        vm: VMDefinition,
        *,
        copy_disks: list[str],
    ) -> bool:
        """True when the hypervisor moved the running domain; false when it cannot (then we go cold). QEMU copies
        the disks named in ``copy_disks`` (guest devices) and only those: the others are shared with the target,
        and copying one onto itself would corrupt it. A NIC whose combined filter is named otherwise on the
        target (``nicfilters.retargeted``) arrives referring to the target's: the source's name there could be
        another set's filter."""
        flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        params: dict[str, object] = {}
        if copy_disks:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = copy_disks
        target_connection = self.connections.get(target.uri)
        if any(len(nic.security_groups) > 1 for nic in vm.nics):
            names = [combined_filter(target_connection, nic.security_groups, bits=self.nic_filter_bits)[0]
                     for nic in vm.nics]  # fmt: skip
            secure = libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE
            running = retargeted(domain.XMLDesc(secure), names)
            if running is not None:
                params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = running
                persistent = retargeted(domain.XMLDesc(secure | libvirt.VIR_DOMAIN_XML_INACTIVE), names)
                params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = persistent or running
        try:
            domain.migrate3(target_connection, params, flags)
        except libvirt.libvirtError as error:
            if error_code(error) in _NO_LIVE_MIGRATION:
                # E.g. a disk on storage libvirt does not take for shared, where QEMU would copy nothing.
                log.warning("cannot live-migrate %s to %s (%s): migrating it cold", domain.name(), target.name,
                            error.get_error_message())  # fmt: skip
                return False
            raise
        return True

    def poll(self, host: HostRef, uuid: str) -> VMStatus:
        with self._using(host, f"poll {uuid}") as connection:
            return domain_status(self._lookup(connection, uuid))


__all__ = ["LibvirtVirtualization", "deployed_status", "domain_status", "guest_type"]
