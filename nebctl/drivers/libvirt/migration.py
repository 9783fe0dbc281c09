"""A domain's disks on the way from one libvirt host to another: which volumes it uses, which of them the target
lacks, copying those through libvirt's streams, and removing the source's copies once the domain has moved.

``LibvirtVirtualization.migrate`` uses these. Volumes are found by pool and name on both hosts (a datastore is
the pool of the same name on every host). A volume the target's pool already lists, after a refresh, is
*shared* (the same directory on shared storage, or an earlier try's copy) and is left alone on both sides;
only the volumes the target lacked are copied, and only those are deleted from the source afterwards, so
shared storage never loses a disk. The bytes travel from the source daemon through this process to the
target daemon, sparse (holes are not sent), so the same code works between two remote hosts (qemu+ssh://).
A qcow2 overlay is copied as the file it is: its backing file is expected at the same path on the target,
which holds for nebctl's datastores (one path on every host) and their images.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from nebctl.drivers import context
from nebctl.drivers.errors import PermanentError
from nebctl.drivers.libvirt.common import ignoring
from nebctl.drivers.libvirt.failures import DRIVER_NAME, error_code
from nebctl.drivers.libvirt.storage import lookup_volume, volume_info
from nebctl.drivers.libvirt.xmlbuild.storage import VolumeElement

_DOWNLOAD_SPARSE = libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM
_UPLOAD_SPARSE = libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM


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


def missing_on(connection: libvirt.virConnect, disks: list[VolumeDisk], host: str) -> list[VolumeDisk]:
    """The disks whose volume the target's pool does not hold (after a refresh, so that a volume another host
    wrote to shared storage is seen). Raises ``PermanentError`` when the target lacks one of the pools."""
    missing = []
    pools: dict[str, libvirt.virStoragePool] = {}
    for disk in disks:
        if disk.pool not in pools:
            pools[disk.pool] = _active_pool(connection, disk.pool, host)
            with ignoring(libvirt.VIR_ERR_OPERATION_INVALID):  # "pool has asynchronous jobs running"
                pools[disk.pool].refresh(0)
        if lookup_volume(pools[disk.pool], disk.volume) is None:
            missing.append(disk)
    return missing


def copy_volume(source: libvirt.virConnect, target: libvirt.virConnect, disk: VolumeDisk, host: str) -> None:
    """Create ``disk``'s volume in the target's pool with the source volume's bytes. A failed copy removes
    its partial volume. A backend without bytes (libvirt's test driver) gets the volume's record only."""
    source_volume = source.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume)
    info = volume_info(source_volume)
    pool = _active_pool(target, disk.pool, host)
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
        upload = target.newStream(0)
        volume.upload(upload, 0, 0, _UPLOAD_SPARSE)
        try:
            download.sparseRecvAll(_send, _send_hole, upload)
            download.finish()
            upload.finish()
        except BaseException:
            _abort(upload)
            raise
    except BaseException:
        _abort(download)
        with ignoring(libvirt.VIR_ERR_NO_STORAGE_VOL):
            volume.delete(0)
        raise
    pool.refresh(0)


def _send(_stream: libvirt.virStream, data: bytes, upload: libvirt.virStream) -> int:
    if context.current().cancelled.is_set():
        raise PermanentError("disk copy cancelled", driver=DRIVER_NAME)
    view = memoryview(data)
    while view:
        sent = upload.send(bytes(view))
        if sent < 0:
            raise PermanentError(f"disk copy: the target stream refused the data ({sent})", driver=DRIVER_NAME)
        view = view[sent:]
    return len(data)


def _send_hole(_stream: libvirt.virStream, length: int, upload: libvirt.virStream) -> int:
    return int(upload.sendHole(length))


def _abort(stream: libvirt.virStream) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        stream.abort()


def delete_volumes(connection: libvirt.virConnect, disks: list[VolumeDisk]) -> None:
    """Remove the source's copies of the disks that moved; already gone is fine (a retry, an undeploy)."""
    for disk in disks:
        with ignoring(libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            connection.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume).delete(0)


__all__ = ["VolumeDisk", "copy_volume", "delete_volumes", "missing_on", "volume_disks"]
