"""A domain's disks on the way from one libvirt host to another: which volumes it uses, which of them the two
hosts share, copying the others through libvirt's streams, and removing the source's copies once the domain
has moved.

``LibvirtVirtualization.migrate`` uses these. Volumes are found by pool and name on both hosts (a datastore is
the pool of the same name on every host). Whether a volume the target lists is the source's own file (shared
storage) or a copy of it is decided per pool, by the daemons themselves: a probe volume created in the source's
pool is looked up in the target's, after a refresh (``shared_pools``). A volume name alone cannot tell: an
earlier try killed in the middle of a copy leaves a truncated volume of the right name, and nebctl's datastores
have one path on every host, so the path cannot tell either. A volume of a shared pool is never copied or
deleted, on either side. A volume of a pool the hosts do not share is the source's to give: until the domain
is defined on the target, the target's volume of that name is an earlier try's copy, complete or not, and is
replaced (``copy_volume``, ``discard_copies``); once it is defined there, the source's volume is removed, and
only when the target holds its own (``remove_moved``), so the last copy is never the one deleted.

The bytes travel from the source daemon through this process to the target daemon, sparse (holes are not
sent), so the same code works between two remote hosts (qemu+ssh://). A copy is checked before the domain is
defined on the target: every byte of the source's file received (data and holes), then the same capacity and
format on both sides. A qcow2 overlay is copied as the file it is: its backing file is expected at the same
path on the target, which holds for nebctl's datastores (one path on every host) and their images.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from nebctl.drivers import context
from nebctl.drivers.errors import PermanentError, TemporaryError
from nebctl.drivers.libvirt.common import ignoring
from nebctl.drivers.libvirt.failures import DRIVER_NAME, error_code
from nebctl.drivers.libvirt.storage import lookup_volume, volume_info
from nebctl.drivers.libvirt.xmlbuild.storage import VolumeElement

_DOWNLOAD_SPARSE = libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM
_UPLOAD_SPARSE = libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM

# Probe volumes: ``nebctl-probe-<unix time>-<random>``. One left by a process killed while probing is removed by
# a later probe of that pool once it is older than PROBE_STALE seconds.
PROBE_PREFIX = "nebctl-probe-"
PROBE_STALE = 3600

# The source domain's note, written before a cold migration stops it, that it ran: a retry after a crash finds
# it stopped and still starts it on the target.
MIGRATION_NAMESPACE = "https://nebctl.dev/xmlns/migration/1"
MIGRATION_PREFIX = "nebctlmigration"

log = logging.getLogger("nebctl.drivers.libvirt")


@dataclass(frozen=True)
class VolumeDisk:
    """A disk or CD-ROM of a domain backed by a pool volume."""

    pool: str
    volume: str
    device: str  # the guest's device name (vda, sda): how a live migration names the disks it copies
    read_only: bool  # CD-ROMs (the cloud-init seed): QEMU's disk migration does not copy them


def volume_disks(domain: libvirt.virDomain) -> list[VolumeDisk]:
    """The domain's volume-backed disks and CD-ROMs, from its persistent definition."""
    document = ET.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    found = []
    for disk in document.findall("./devices/disk[@type='volume']"):
        source, target = disk.find("./source"), disk.find("./target")
        pool, volume = (source.get("pool"), source.get("volume")) if source is not None else (None, None)
        device = target.get("dev") if target is not None else None
        if pool and volume and device:
            read_only = disk.get("device") == "cdrom" or disk.find("./readonly") is not None
            found.append(VolumeDisk(pool, volume, device, read_only))
    return found


def _active_pool(connection: libvirt.virConnect, name: str, host: str) -> libvirt.virStoragePool:
    try:
        pool = connection.storagePoolLookupByName(name)
    except libvirt.libvirtError as error:
        if error_code(error) != libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise
        raise PermanentError(
            f"host {host} has no datastore {name}: the disks in it cannot move there", driver=DRIVER_NAME
        ) from error
    if not pool.isActive():
        pool.create(0)
    return pool


def _refresh(pool: libvirt.virStoragePool) -> None:
    """Re-list the pool's volumes. A pool busy with a volume's build refuses: a retry may find it free."""
    try:
        pool.refresh(0)
    except libvirt.libvirtError as error:
        if error_code(error) != libvirt.VIR_ERR_OPERATION_INVALID:  # "pool has asynchronous jobs running"
            raise
        raise TemporaryError(f"datastore {pool.name()} is busy: {error.get_error_message()}",
                             driver=DRIVER_NAME) from error  # fmt: skip


# --- shared or not ----------------------------------------------------------------------------------------


def shared_pools(
    source: libvirt.virConnect, target: libvirt.virConnect, disks: list[VolumeDisk], host: str
) -> frozenset[str]:
    """The pools of ``disks`` that the two hosts share: a volume created in the source's pool shows in the
    target's after a refresh. Raises ``PermanentError`` when the target lacks one of the pools (before anything
    stops or moves); a pool the source lacks is not shared (it has nothing left there)."""
    shared = set()
    for name in dict.fromkeys(disk.pool for disk in disks):
        target_pool = _active_pool(target, name, host)
        try:
            source_pool = source.storagePoolLookupByName(name)
        except libvirt.libvirtError as error:
            if error_code(error) != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
            continue
        if not source_pool.isActive():
            source_pool.create(0)
        if _probe_seen(source_pool, target_pool):
            shared.add(name)
    return frozenset(shared)


def _probe_seen(source_pool: libvirt.virStoragePool, target_pool: libvirt.virStoragePool) -> bool:
    _remove_stale_probes(source_pool)
    name = f"{PROBE_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:12]}"
    probe = source_pool.createXML(VolumeElement(name=name, capacity=0, format="raw").to_xml(), 0)
    try:
        # Not seen only after a refresh that worked: "not shared" lets the target's volume be replaced.
        _refresh(target_pool)
        return lookup_volume(target_pool, name) is not None
    finally:
        with ignoring(libvirt.VIR_ERR_NO_STORAGE_VOL):
            probe.delete(0)


def _remove_stale_probes(pool: libvirt.virStoragePool) -> None:
    now = time.time()
    for name in pool.listVolumes():
        if not name.startswith(PROBE_PREFIX):
            continue
        created = name[len(PROBE_PREFIX) :].split("-", 1)[0]
        if created.isdigit() and now - int(created) > PROBE_STALE:
            with ignoring(libvirt.VIR_ERR_NO_STORAGE_VOL):
                pool.storageVolLookupByName(name).delete(0)


# --- copies on the target ---------------------------------------------------------------------------------


def discard_copies(target: libvirt.virConnect, disks: list[VolumeDisk]) -> None:
    """Delete the target's volumes of ``disks``, each in a pool the hosts do not share, while the source still
    holds the domain: they are an earlier try's copies, perhaps truncated, and the source's are the VM's."""
    for disk in disks:
        with ignoring(libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            target.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume).delete(0)


def copy_volume(source: libvirt.virConnect, target: libvirt.virConnect, disk: VolumeDisk, host: str) -> None:
    """Give the target's pool ``disk``'s volume with the source volume's bytes, replacing the target's volume of
    that name (an earlier try's copy: call this only for a disk in a pool the hosts do not share). The copy is
    checked (every byte received, then capacity and format); a failed or short one removes its volume. A
    backend without bytes (libvirt's test driver) gets the volume's record only."""
    source_volume = source.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume)
    info = volume_info(source_volume)
    pool = _active_pool(target, disk.pool, host)
    discard_copies(target, [disk])
    download = source.newStream(0)
    try:
        source_volume.download(download, 0, 0, _DOWNLOAD_SPARSE)
    except libvirt.libvirtError as error:
        if error_code(error) != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        element = VolumeElement(name=disk.volume, capacity=info.capacity, format=info.format,
                                allocation=info.allocation)  # fmt: skip
        pool.createXML(element.to_xml(), 0)
        return
    try:
        _kind, _capacity, physical = source_volume.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)
        # Raw, at the file's exact size, then overwritten byte for byte: a refresh reads the real format from
        # the header (as an image import does), and no stale tail of a libvirt-made qcow2 remains.
        volume = pool.createXML(VolumeElement(name=disk.volume, capacity=int(physical), format="raw").to_xml(), 0)
    except BaseException:
        _abort(download)
        raise
    try:
        transfer = _Transfer(target.newStream(0))
        volume.upload(transfer.upload, 0, 0, _UPLOAD_SPARSE)
        try:
            download.sparseRecvAll(_send, _send_hole, transfer)
            download.finish()
            transfer.upload.finish()
        except BaseException:
            _abort(transfer.upload)
            raise
        if transfer.received != int(physical):
            raise TemporaryError(f"disk copy of {disk.volume}: {transfer.received} of {int(physical)} bytes "
                                 "received", driver=DRIVER_NAME)  # fmt: skip
        _refresh(pool)
        copied = volume_info(pool.storageVolLookupByName(disk.volume))
        if (copied.capacity, copied.format) != (info.capacity, info.format):
            raise TemporaryError(
                f"disk copy of {disk.volume}: the copy is {copied.format} of {copied.capacity} bytes, the source "
                f"{info.format} of {info.capacity}",
                driver=DRIVER_NAME,
            )
    except BaseException:
        _abort(download)
        with ignoring(libvirt.VIR_ERR_NO_STORAGE_VOL):
            volume.delete(0)
        raise


class _Transfer:
    """The upload stream of a copy and how many bytes of the source's file (data and holes) went into it."""

    def __init__(self, upload: libvirt.virStream) -> None:
        self.upload = upload
        self.received = 0


def _send(_stream: libvirt.virStream, data: bytes, transfer: _Transfer) -> int:
    if context.current().cancelled.is_set():
        raise PermanentError("disk copy cancelled", driver=DRIVER_NAME)
    view = memoryview(data)
    while view:
        sent = transfer.upload.send(bytes(view))
        if sent < 0:
            raise PermanentError(f"disk copy: the target stream refused the data ({sent})", driver=DRIVER_NAME)
        view = view[sent:]
    transfer.received += len(data)
    return len(data)


def _send_hole(_stream: libvirt.virStream, length: int, transfer: _Transfer) -> int:
    result = int(transfer.upload.sendHole(length))
    transfer.received += length
    return result


def _abort(stream: libvirt.virStream) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        stream.abort()


# --- the source's copies ----------------------------------------------------------------------------------


def remove_moved(source: libvirt.virConnect, target: libvirt.virConnect, disks: list[VolumeDisk]) -> None:
    """Once the domain is defined on the target, delete the source's volumes of ``disks`` (each in a pool the
    hosts do not share) that the target holds too. One the target lacks stays: it is the only copy. Already
    gone is fine (a retry, an undeploy)."""
    refreshed: set[str] = set()
    for disk in disks:
        try:
            target_pool = target.storagePoolLookupByName(disk.pool)
            if disk.pool not in refreshed:
                with ignoring(libvirt.VIR_ERR_OPERATION_INVALID):  # not refreshed: one volume may be kept more
                    target_pool.refresh(0)
                refreshed.add(disk.pool)
            held = lookup_volume(target_pool, disk.volume) is not None
        except libvirt.libvirtError as error:
            if error_code(error) != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
            held = False
        if not held:
            log.warning("the target lacks volume %s of datastore %s: its source's copy is kept", disk.volume,
                        disk.pool)  # fmt: skip
            continue
        with ignoring(libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            source.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume).delete(0)


# --- the source domain's note -----------------------------------------------------------------------------


def note_running(domain: libvirt.virDomain, target_uri: str) -> None:
    """Write in the (persistent) source domain that it ran before a cold migration to ``target_uri`` stops it."""
    element = ET.Element("migration", {"target": target_uri, "running": "yes"})
    try:
        domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ET.tostring(element, encoding="unicode"),
                           MIGRATION_PREFIX, MIGRATION_NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_CONFIG)  # fmt: skip
    except libvirt.libvirtError as error:
        if error_code(error) not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
            raise


def noted_running(domain: libvirt.virDomain, target_uri: str) -> bool:
    """Whether an earlier try of a migration to ``target_uri`` stopped the domain while it ran."""
    try:
        text = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, MIGRATION_NAMESPACE,
                               libvirt.VIR_DOMAIN_AFFECT_CONFIG)  # fmt: skip
    except libvirt.libvirtError as error:
        if error_code(error) in (libvirt.VIR_ERR_NO_DOMAIN_METADATA, libvirt.VIR_ERR_NO_SUPPORT):
            return False
        raise
    element = ET.fromstring(text)
    return element.get("target") == target_uri and element.get("running") == "yes"


__all__ = [
    "VolumeDisk",
    "copy_volume",
    "discard_copies",
    "note_running",
    "noted_running",
    "remove_moved",
    "shared_pools",
    "volume_disks",
]
