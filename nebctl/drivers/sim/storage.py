"""The sim storage driver: datastores sized by their host's disk, image volumes, VM disks cloned from them.

Registered by ``nebctl.drivers.registry``. Nothing is written to disk but the fleet file: a volume is a row
with a virtual size (``capacity``) and the space it takes (``allocation``). An overlay clone takes little space
until written; a full copy takes its backing volume's. A datastore's capacity is its host's disk, shared by the
host's datastores, so filling one leaves less for the others, as with directory pools on one file system.
An image imported from an existing local file gets its real size and is checked against ``sha256``; any other
source is simulated.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from nebctl.core.families import Family
from nebctl.drivers.errors import ConflictError, NotFoundError, PermanentError
from nebctl.drivers.sim.compute import SimDriver
from nebctl.drivers.sim.fleet import edge, owner_from, owner_json
from nebctl.drivers.types import (
    DatastoreDefinition,
    DatastoreStatus,
    HostRef,
    ImageImport,
    VolumeDefinition,
    VolumeInfo,
)

SIMULATED_IMAGE_SIZE = 2 * 1024**3
OVERLAY_ALLOCATION = 196 * 1024  # what a fresh qcow2 overlay takes

_VOLUME_COLUMNS = "name, path, capacity, allocation, format, backing, sha256, owner"


def _volume(row: tuple[Any, ...]) -> VolumeInfo:
    name, path, capacity, allocation, fmt, backing, sha256, owner = row
    return VolumeInfo(name, path, capacity, allocation, fmt, backing, sha256, owner_from(owner))


def _local_file(source: str) -> Path | None:
    parts = urlsplit(source)
    if parts.scheme in ("", "file"):
        path = Path(parts.path if parts.scheme else source)
        return path if path.is_file() else None
    return None


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class SimStorage(SimDriver):
    family: ClassVar[Family] = Family.STORAGE
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"import", "clone", "overlay-clone", "full-clone", "resize", "delete", "snapshot", "monitor"}
    )

    def _datastore(self, connection: sqlite3.Connection, host: str, datastore: str) -> str:
        row = connection.execute(
            "SELECT path FROM datastores WHERE host = ? AND name = ?", (host, datastore)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no datastore {datastore} on host {host}", driver="sim")
        return str(row[0])

    def _free(self, connection: sqlite3.Connection, host: str) -> int:
        disk = connection.execute("SELECT disk FROM hosts WHERE name = ?", (host,)).fetchone()[0]
        used = connection.execute(
            "SELECT COALESCE(SUM(allocation), 0) FROM volumes WHERE host = ?", (host,)
        ).fetchone()[0]
        return int(disk - used)

    def _reserve(self, connection: sqlite3.Connection, host: str, datastore: str, size: int) -> None:
        free = self._free(connection, host)
        if size > free:
            raise PermanentError(
                f"datastore {datastore} on host {host} is full: {size} bytes wanted, {free} free", driver="sim"
            )

    @edge
    def create_datastore(self, host: HostRef, datastore: DatastoreDefinition) -> DatastoreStatus:
        name, _ = self.fleet.enter("storage.create_datastore", host)
        with self.fleet.write() as connection:
            connection.execute(
                "INSERT INTO datastores VALUES (?, ?, ?, ?, ?) ON CONFLICT (host, name) DO UPDATE SET "
                "path = excluded.path, type = excluded.type, owner = excluded.owner",
                (name, datastore.name, datastore.path, datastore.type, owner_json(datastore.owner)),
            )
        return self._status(name, datastore.name)

    @edge
    def delete_datastore(self, host: HostRef, name: str) -> None:
        host_name, _ = self.fleet.enter("storage.delete_datastore", host)
        with self.fleet.write() as connection:
            self._datastore(connection, host_name, name)
            count = connection.execute(
                "SELECT COUNT(*) FROM volumes WHERE host = ? AND datastore = ?", (host_name, name)
            ).fetchone()[0]
            if count:
                raise ConflictError(f"datastore {name} on host {host_name} still holds {count} volumes", driver="sim")
            connection.execute("DELETE FROM datastores WHERE host = ? AND name = ?", (host_name, name))

    @edge
    def import_image(self, host: HostRef, datastore: str, image: ImageImport) -> VolumeInfo:
        name, _ = self.fleet.enter("storage.import", host)
        local = _local_file(image.source)
        size, sha256 = SIMULATED_IMAGE_SIZE, image.sha256
        if local is not None:
            try:
                size, actual = os.path.getsize(local), _digest(local)
            except OSError as error:
                raise PermanentError(f"cannot read image {local}: {error}", driver="sim") from error
            if image.sha256 and actual != image.sha256.lower():
                raise PermanentError(f"image {image.source}: sha256 is {actual}, expected {image.sha256}", driver="sim")
            sha256 = actual
        with self.fleet.write() as connection:
            pool = self._datastore(connection, name, datastore)
            row = connection.execute(
                f"SELECT {_VOLUME_COLUMNS}, source FROM volumes WHERE host = ? AND datastore = ? AND name = ?",
                (name, datastore, image.volume),
            ).fetchone()
            if row is not None:
                if row[-1] != image.source:
                    raise ConflictError(
                        f"volume {image.volume} in {datastore} was imported from {row[-1]}, not {image.source}",
                        driver="sim",
                    )
                return _volume(row[:-1])
            self._reserve(connection, name, datastore, size)
            info = VolumeInfo(
                name=image.volume,
                path=f"{pool.rstrip('/')}/{image.volume}",
                capacity=size,
                allocation=size,
                format=image.format or "qcow2",
                sha256=sha256,
                owner=image.owner,
            )
            self._insert(connection, name, datastore, info, source=image.source)
            return info

    def _insert(
        self, connection: sqlite3.Connection, host: str, datastore: str, info: VolumeInfo, *, source: str | None
    ) -> None:
        connection.execute(
            "INSERT INTO volumes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (host, datastore, info.name, info.path, info.capacity, info.allocation, info.format, info.backing,
             info.sha256, source, owner_json(info.owner)),
        )  # fmt: skip

    def _get(self, connection: sqlite3.Connection, host: str, datastore: str, volume: str) -> VolumeInfo:
        row = connection.execute(
            f"SELECT {_VOLUME_COLUMNS} FROM volumes WHERE host = ? AND datastore = ? AND name = ?",
            (host, datastore, volume),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no volume {volume} in datastore {datastore} on host {host}", driver="sim")
        return _volume(row)

    @edge
    def clone(self, host: HostRef, datastore: str, volume: VolumeDefinition) -> VolumeInfo:
        name, _ = self.fleet.enter("storage.clone", host)
        with self.fleet.write() as connection:
            pool = self._datastore(connection, name, datastore)
            row = connection.execute(
                f"SELECT {_VOLUME_COLUMNS}, source FROM volumes WHERE host = ? AND datastore = ? AND name = ?",
                (name, datastore, volume.volume),
            ).fetchone()
            if row is not None:
                existing = _volume(row[:-1])
                if row[-1] != volume.backing:
                    raise ConflictError(
                        f"volume {volume.volume} exists as a clone of {row[-1]}, not {volume.backing}", driver="sim"
                    )
                if volume.size is not None and volume.size > existing.capacity:
                    return self._grow(connection, name, datastore, existing, volume.size)
                return existing
            if volume.backing is not None:
                backing = self._get(connection, name, datastore, volume.backing)
                capacity = backing.capacity if volume.size is None else volume.size
                if capacity < backing.capacity:
                    raise PermanentError(
                        f"cannot clone {backing.name} ({backing.capacity} bytes) into a smaller "
                        f"{capacity}-byte volume {volume.volume}",
                        driver="sim",
                    )
                full = volume.clone == "full"
                allocation = backing.allocation if full else OVERLAY_ALLOCATION
                backing_name = None if full else backing.name
            else:
                if volume.size is None:
                    raise PermanentError(f"blank volume {volume.volume} needs a size", driver="sim")
                capacity, allocation, backing_name = volume.size, OVERLAY_ALLOCATION, None
            self._reserve(connection, name, datastore, allocation)
            info = VolumeInfo(
                name=volume.volume,
                path=f"{pool.rstrip('/')}/{volume.volume}",
                capacity=capacity,
                allocation=allocation,
                format=volume.format,
                backing=backing_name,
                owner=volume.owner,
            )
            # ``source`` keeps what it was cloned from even for a full copy, which has no backing file.
            self._insert(connection, name, datastore, info, source=volume.backing)
            return info

    def _grow(
        self, connection: sqlite3.Connection, host: str, datastore: str, info: VolumeInfo, size: int
    ) -> VolumeInfo:
        connection.execute(
            "UPDATE volumes SET capacity = ? WHERE host = ? AND datastore = ? AND name = ?",
            (size, host, datastore, info.name),
        )
        return VolumeInfo(
            info.name, info.path, size, info.allocation, info.format, info.backing, info.sha256, info.owner
        )

    @edge
    def resize(self, host: HostRef, datastore: str, volume: str, size: int) -> VolumeInfo:
        name, _ = self.fleet.enter("storage.resize", host)
        with self.fleet.write() as connection:
            self._datastore(connection, name, datastore)
            info = self._get(connection, name, datastore, volume)
            if size < info.capacity:
                raise PermanentError(
                    f"volume {volume} is {info.capacity} bytes: shrinking it to {size} is refused", driver="sim"
                )
            if size == info.capacity:
                return info
            return self._grow(connection, name, datastore, info, size)

    @edge
    def delete(self, host: HostRef, datastore: str, volume: str) -> None:
        name, _ = self.fleet.enter("storage.delete", host)
        with self.fleet.write() as connection:
            self._datastore(connection, name, datastore)
            self._get(connection, name, datastore, volume)
            user = connection.execute(
                "SELECT name FROM volumes WHERE host = ? AND datastore = ? AND backing = ? LIMIT 1",
                (name, datastore, volume),
            ).fetchone()
            if user is not None:
                raise ConflictError(f"volume {volume} is the backing file of {user[0]}", driver="sim")
            connection.execute(
                "DELETE FROM volumes WHERE host = ? AND datastore = ? AND name = ?", (name, datastore, volume)
            )
            connection.execute(
                "DELETE FROM snapshots WHERE host = ? AND datastore = ? AND volume = ?", (name, datastore, volume)
            )

    @edge
    def snapshot(self, host: HostRef, datastore: str, volume: str, snapshot: str) -> VolumeInfo:
        name, _ = self.fleet.enter("storage.snapshot", host)
        with self.fleet.write() as connection:
            self._datastore(connection, name, datastore)
            info = self._get(connection, name, datastore, volume)
            connection.execute(
                "INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                (name, datastore, volume, snapshot, self.fleet.clock()),
            )
            return info

    def _status(self, host: str, datastore: str) -> DatastoreStatus:
        connection = self.fleet.store.read()
        self._datastore(connection, host, datastore)
        volumes = {
            row[0]: _volume(row)
            for row in connection.execute(
                f"SELECT {_VOLUME_COLUMNS} FROM volumes WHERE host = ? AND datastore = ?", (host, datastore)
            )
        }
        disk = connection.execute("SELECT disk FROM hosts WHERE name = ?", (host,)).fetchone()[0]
        free = max(0, self._free(connection, host))
        used = sum(v.allocation for v in volumes.values())
        return DatastoreStatus(name=datastore, total=disk, used=used, free=free, volumes=volumes)

    @edge
    def monitor(self, host: HostRef, datastore: str) -> DatastoreStatus:
        name, _ = self.fleet.enter("storage.monitor", host)
        return self._status(name, datastore)
