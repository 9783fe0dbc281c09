"""The libvirt storage driver: one dir pool per datastore, image import, disk clones, resize, snapshots.

Registered as ``libvirt`` for the storage family. Every action is idempotent by name: importing, cloning or
creating something that already exists returns it (a clone is grown to the asked size on the way). A pool and
an image volume made for an owner get an entry in the host's ownership ledger (``ledger``), removed with them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import ClassVar

import libvirt

from nebctl.core.families import Family
from nebctl.drivers.errors import ConflictError, PermanentError
from nebctl.drivers.libvirt import images, ledger
from nebctl.drivers.libvirt.common import DRIVER_NAME, LibvirtDriverBase, ignoring, pool_definition
from nebctl.drivers.libvirt.failures import error_code
from nebctl.drivers.libvirt.xmlbuild.storage import BackingStoreElement, PoolElement, VolumeElement
from nebctl.drivers.types import (
    DatastoreDefinition,
    DatastoreStatus,
    HostRef,
    ImageImport,
    Ownership,
    VolumeDefinition,
    VolumeInfo,
)


def volume_info(volume: libvirt.virStorageVol, *, sha256: str | None = None) -> VolumeInfo:
    """A volume as the controller sees it, from its XML (one call)."""
    document = ET.fromstring(volume.XMLDesc(0))
    backing = document.findtext("./backingStore/path")
    format_element = document.find("./target/format")
    return VolumeInfo(
        name=volume.name(),
        path=document.findtext("./target/path") or volume.path(),
        capacity=int(document.findtext("./capacity") or 0),
        allocation=int(document.findtext("./allocation") or 0),
        format=format_element.get("type", "raw") if format_element is not None else "raw",
        backing=backing or None,
        sha256=sha256,
    )


def lookup_volume(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as error:
        if error_code(error) == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def snapshot_name(volume: str, snapshot: str) -> str:
    return f"{volume}@{snapshot}"


def _at_path(
    connection: libvirt.virConnect, pool: libvirt.virStoragePool, path: str, owner: Ownership | None
) -> libvirt.virStoragePool:
    """``pool`` serving ``path``: a dir pool of ``owner``'s moved elsewhere (by hand, with virsh) is defined
    again at ``path``, keeping its name, UUID (which the ownership ledger binds its entries to) and the rest of
    its XML, and is stopped if it runs elsewhere (the caller starts it again). No volume file is touched at
    either path: a dir pool's stop and definition only change where libvirt looks, and its start lists the
    files that are there. A running VM keeps the disk files it has open (libvirt lets a pool stop under them;
    VM disks name their pool and volume, resolved to a path when the VM starts). A pool of another type, or one
    ``owner``'s ledger does not claim (made without nebctl, or by another stack), is left alone: a conflict."""
    persistent = ET.fromstring(pool_definition(pool))
    live_path = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path") if pool.isActive() else path
    target = persistent.find("./target/path")
    if target is not None and _same(target.text, path) and _same(live_path, path):
        return pool
    where = target.text if target is not None else "no path"
    if persistent.get("type") != "dir" or target is None:
        raise ConflictError(
            f"pool {pool.name()} is a {persistent.get('type')} pool at {where}, not a dir pool at {path}: "
            "it is not moved",
            driver=DRIVER_NAME,
        )
    if not _claims(connection, pool, owner):
        raise ConflictError(
            f"pool {pool.name()} exists with path {where}, not {path}, and is not this datastore's: it is not moved",
            driver=DRIVER_NAME,
        )
    if pool.isActive():
        pool.destroy()  # stops it: the files stay where they are
    if not _same(target.text, path):
        target.text = path
        pool = connection.storagePoolDefineXML(ET.tostring(persistent, encoding="unicode"), 0)
    return pool


def _claims(connection: libvirt.virConnect, pool: libvirt.virStoragePool, owner: Ownership | None) -> bool:
    """Whether an entry of the host's ledgers gives ``pool`` (this very pool: its UUID) to ``owner``."""
    if owner is None:
        return False
    mine = (owner.installation, owner.stack, owner.kind, owner.namespace, owner.name)
    return any(
        entry.object == "pool"
        and entry.name == pool.name()
        and entry.uuid == pool.UUIDString()
        and (entry.owner.installation, entry.owner.stack, entry.owner.kind, entry.owner.namespace, entry.owner.name)
        == mine
        for entry in ledger.read_all(connection)
    )


def _same(one: str | None, other: str) -> bool:
    return one is not None and (one.rstrip("/") or "/") == (other.rstrip("/") or "/")


class LibvirtStorage(LibvirtDriverBase):
    family: ClassVar[Family] = Family.STORAGE
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"import", "clone", "overlay-clone", "full-clone", "resize", "delete", "snapshot", "monitor", "dir"}
    )

    # --- datastores ---------------------------------------------------------------------------------------

    def create_datastore(self, host: HostRef, datastore: DatastoreDefinition) -> DatastoreStatus:
        if datastore.type != "dir":
            raise PermanentError(f"datastore type {datastore.type!r} is not supported", driver=DRIVER_NAME)
        with self._using(host, f"create datastore {datastore.name}") as connection:
            try:
                pool = connection.storagePoolLookupByName(datastore.name)
            except libvirt.libvirtError as error:
                if error_code(error) != libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise
                xml = PoolElement(name=datastore.name, path=datastore.path).to_xml()
                pool = connection.storagePoolDefineXML(xml, 0)
            pool = _at_path(connection, pool, datastore.path, datastore.owner)
            if not pool.isActive():
                pool.build(0)  # creates the directory; harmless when it exists
                pool.create(0)
            pool.setAutostart(1)
            uuid = pool.UUIDString()
        status = self.monitor(host, datastore.name)
        if datastore.owner is not None:
            with self._using(host, f"record the ownership of datastore {datastore.name}") as connection:
                details = {"capacity": status.total}
                ledger.record(
                    connection, host.uri, ledger.Entry("pool", datastore.name, uuid, datastore.owner, "", details)
                )
        return status

    def delete_datastore(self, host: HostRef, name: str) -> None:
        with self._using(host, f"delete datastore {name}") as connection:
            pool = connection.storagePoolLookupByName(name)
            if pool.isActive():
                pool.refresh(0)
                if pool.numOfVolumes() > 0:
                    raise ConflictError(f"datastore {name} still holds volumes", driver=DRIVER_NAME)
                pool.destroy()
            with ignoring(libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_SUPPORT):
                pool.delete(0)  # the (empty) directory
            pool.undefine()
            ledger.forget(connection, host.uri, "pool", name)

    def _pool(self, connection: libvirt.virConnect, name: str) -> libvirt.virStoragePool:
        pool = connection.storagePoolLookupByName(name)
        if not pool.isActive():
            pool.create(0)
        return pool

    # --- volumes ------------------------------------------------------------------------------------------

    def import_image(self, host: HostRef, datastore: str, image: ImageImport) -> VolumeInfo:
        info = self._import_image(host, datastore, image)
        if image.owner is not None:
            with self._using(host, f"record the ownership of image {image.volume}") as connection:
                details = {"pool": datastore, "capacity": info.capacity, "format": info.format, "sha256": info.sha256}
                pool = connection.storagePoolLookupByName(datastore)
                entry = ledger.Entry("volume", image.volume, pool.UUIDString(), image.owner, datastore, details)
                ledger.record(connection, host.uri, entry)
        return info

    def _import_image(self, host: HostRef, datastore: str, image: ImageImport) -> VolumeInfo:
        with self._using(host, f"import image {image.volume}") as connection:
            pool = self._pool(connection, datastore)
            existing = lookup_volume(pool, image.volume)
            if existing is not None:
                return volume_info(existing, sha256=image.sha256)
            with images.local_copy(image.source, sha256=image.sha256) as (path, known):
                detected, virtual_size = images.detect(path)
                fmt = image.format or detected
                if image.format is not None and image.format != detected:
                    raise PermanentError(
                        f"{image.source} is {detected}, but the image says {image.format}", driver=DRIVER_NAME
                    )
                size = path.stat().st_size
                # Created raw at the file's exact size and overwritten byte for byte: libvirt then reads the
                # real format from the header on refresh (a qcow2 made by libvirt would leave a stale tail).
                volume = pool.createXML(VolumeElement(name=image.volume, capacity=size, format="raw").to_xml(), 0)
                try:
                    # The digest is computed from the bytes as they are sent: the file is read once.
                    digest = images.upload(connection, volume, path)
                    if digest is not None and image.sha256 is not None and digest != image.sha256.lower():
                        raise PermanentError(
                            f"{image.source}: sha256 is {digest}, expected {image.sha256}; the volume was removed",
                            driver=DRIVER_NAME,
                        )
                except BaseException:
                    with ignoring(libvirt.VIR_ERR_NO_STORAGE_VOL):
                        volume.delete(0)
                    raise
                uploaded = digest is not None
                if digest is None:
                    # A backend without bytes (the test driver): the digest comes from the one read there is.
                    digest = known or images.sha256_of(path)
                    volume.delete(0)
                    if image.sha256 is not None and digest != image.sha256.lower():
                        raise PermanentError(
                            f"{image.source}: sha256 is {digest}, expected {image.sha256}", driver=DRIVER_NAME
                        )
            if uploaded:
                pool.refresh(0)
            else:
                # Keep the record with the detected format and size.
                element = VolumeElement(name=image.volume, capacity=virtual_size, format=fmt, allocation=size)
                pool.createXML(element.to_xml(), 0)
            return volume_info(pool.storageVolLookupByName(image.volume), sha256=digest)

    def clone(self, host: HostRef, datastore: str, volume: VolumeDefinition) -> VolumeInfo:
        with self._using(host, f"clone {volume.volume}") as connection:
            pool = self._pool(connection, datastore)
            existing = lookup_volume(pool, volume.volume)
            if existing is None:
                self._create_disk(pool, volume)
        if volume.size is not None:
            current = self._info(host, datastore, volume.volume)
            if volume.size > current.capacity:
                return self.resize(host, datastore, volume.volume, volume.size)
        return self._info(host, datastore, volume.volume)

    def _create_disk(self, pool: libvirt.virStoragePool, volume: VolumeDefinition) -> None:
        if volume.backing is None:
            if volume.size is None:
                raise PermanentError(f"blank disk {volume.volume} needs a size", driver=DRIVER_NAME)
            pool.createXML(VolumeElement(name=volume.volume, capacity=volume.size, format=volume.format).to_xml(), 0)
            return
        base = pool.storageVolLookupByName(volume.backing)
        base_info = volume_info(base)
        if volume.clone == "overlay":
            if volume.format != "qcow2":
                raise PermanentError("an overlay clone must be qcow2", driver=DRIVER_NAME)
            element = VolumeElement(
                name=volume.volume,
                capacity=max(volume.size or 0, base_info.capacity),
                format="qcow2",
                backing=BackingStoreElement(path=base_info.path, format=base_info.format),
            )
            pool.createXML(element.to_xml(), 0)
        elif volume.clone == "full":
            # Asked at the final size: libvirt grows the copy itself (``clone`` resizes if it did not).
            capacity = max(volume.size or 0, base_info.capacity)
            element = VolumeElement(name=volume.volume, capacity=capacity, format=volume.format)
            pool.createXMLFrom(element.to_xml(), base, 0)
        else:
            raise PermanentError(f"unknown clone mode {volume.clone!r}", driver=DRIVER_NAME)

    def _info(self, host: HostRef, datastore: str, name: str) -> VolumeInfo:
        with self._using(host, f"read volume {name}") as connection:
            return volume_info(self._pool(connection, datastore).storageVolLookupByName(name))

    def resize(self, host: HostRef, datastore: str, volume: str, size: int) -> VolumeInfo:
        with self._using(host, f"resize {volume}") as connection:
            handle = self._pool(connection, datastore).storageVolLookupByName(volume)
            capacity = volume_info(handle).capacity
            if size < capacity:
                raise PermanentError(
                    f"volume {volume} is {capacity} bytes; shrinking to {size} is refused", driver=DRIVER_NAME
                )
            if size > capacity:
                handle.resize(size, 0)
            return volume_info(handle)

    def delete(self, host: HostRef, datastore: str, volume: str) -> None:
        with self._using(host, f"delete {volume}") as connection:
            self._pool(connection, datastore).storageVolLookupByName(volume).delete(0)
            ledger.forget(connection, host.uri, "volume", volume, datastore)

    def snapshot(self, host: HostRef, datastore: str, volume: str, snapshot: str) -> VolumeInfo:
        """A point-in-time copy as a sibling volume ``VOLUME@SNAPSHOT`` (consistent while the VM is stopped);
        it works on any host and format, unlike qcow2 internal snapshots."""
        with self._using(host, f"snapshot {volume}") as connection:
            pool = self._pool(connection, datastore)
            name = snapshot_name(volume, snapshot)
            existing = lookup_volume(pool, name)
            if existing is not None:
                return volume_info(existing)
            source = pool.storageVolLookupByName(volume)
            info = volume_info(source)
            element = VolumeElement(name=name, capacity=info.capacity, format=info.format)
            return volume_info(pool.createXMLFrom(element.to_xml(), source, 0))

    def monitor(self, host: HostRef, datastore: str) -> DatastoreStatus:
        with self._using(host, f"monitor datastore {datastore}") as connection:
            pool = self._pool(connection, datastore)
            with ignoring(libvirt.VIR_ERR_OPERATION_INVALID):  # "pool has asynchronous jobs running"
                pool.refresh(0)
            _state, capacity, allocation, available = pool.info()
            volumes = {volume.name(): volume_info(volume) for volume in pool.listAllVolumes(0)}
            return DatastoreStatus(
                name=datastore, total=int(capacity), used=int(allocation), free=int(available), volumes=volumes
            )
