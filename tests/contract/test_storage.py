"""Contract: datastores and volumes (import, clone, resize never shrinking, delete), for every driver."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from nebctl.drivers.errors import CapabilityError, ConflictError, NotFoundError, PermanentError
from nebctl.drivers.types import DatastoreDefinition, ImageImport, VolumeDefinition
from tests.contract.conftest import BUILDERS, STORAGE_PARAMS, DriverSet, capabilities_on

GiB = 1024**3


@pytest.fixture(params=STORAGE_PARAMS)
def drivers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DriverSet]:
    """The sets whose hosts keep datastores (conftest's ``drivers`` without the cloud's)."""
    with BUILDERS[request.param](tmp_path) as driver_set:
        yield driver_set


@pytest.fixture
def pool(drivers: DriverSet, tmp_path: Path) -> str:
    status = drivers.storage.create_datastore(
        drivers.host, DatastoreDefinition(name="pool", path=drivers.datastore_path)
    )
    assert status.name == "pool"
    return "pool"


@pytest.fixture
def image(drivers: DriverSet, pool: str, tmp_path: Path) -> str:
    source = tmp_path / "base.qcow2"
    source.write_bytes(b"QFI\xfb" + b"\0" * 4096)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    info = drivers.storage.import_image(
        drivers.host, pool, ImageImport(volume="base", source=str(source), sha256=digest, format="qcow2")
    )
    assert info.name == "base"
    return "base"


def test_clone_of_an_image_grows_to_the_asked_size_and_is_idempotent(drivers: DriverSet, pool: str, image: str) -> None:
    base = drivers.storage.monitor(drivers.host, pool).volumes[image]
    wanted = 20 * GiB  # a whole number of sectors, as real backends round sizes up to them
    assert wanted > base.capacity
    disk = VolumeDefinition(volume="vm-disk-0", size=wanted, backing=image)
    first = drivers.storage.clone(drivers.host, pool, disk)
    second = drivers.storage.clone(drivers.host, pool, disk)
    assert first.capacity == second.capacity == wanted
    assert first.path == second.path
    volumes = drivers.storage.monitor(drivers.host, pool).volumes
    assert {image, "vm-disk-0"} <= set(volumes)
    assert volumes["vm-disk-0"].capacity == wanted


def test_blank_volume_has_its_size(drivers: DriverSet, pool: str) -> None:
    info = drivers.storage.clone(drivers.host, pool, VolumeDefinition(volume="blank", size=5 * GiB))
    assert info.capacity == 5 * GiB
    assert info.backing is None


def test_resize_grows_and_never_shrinks(drivers: DriverSet, pool: str) -> None:
    drivers.storage.clone(drivers.host, pool, VolumeDefinition(volume="data", size=5 * GiB))
    if "resize" not in capabilities_on(drivers.storage, drivers.host):
        # A backend without resize (libvirt's test hypervisor) says so by declaration and by its error.
        with pytest.raises(CapabilityError):
            drivers.storage.resize(drivers.host, pool, "data", 8 * GiB)
        return
    assert drivers.storage.resize(drivers.host, pool, "data", 8 * GiB).capacity == 8 * GiB
    with pytest.raises(PermanentError) as raised:
        drivers.storage.resize(drivers.host, pool, "data", 4 * GiB)
    assert not isinstance(raised.value, NotFoundError)
    assert drivers.storage.monitor(drivers.host, pool).volumes["data"].capacity == 8 * GiB


def test_delete_removes_the_volume_and_a_second_delete_is_not_found(drivers: DriverSet, pool: str) -> None:
    drivers.storage.clone(drivers.host, pool, VolumeDefinition(volume="scratch", size=GiB))
    drivers.storage.delete(drivers.host, pool, "scratch")
    assert "scratch" not in drivers.storage.monitor(drivers.host, pool).volumes
    with pytest.raises(NotFoundError):
        drivers.storage.delete(drivers.host, pool, "scratch")


def test_missing_volumes_and_backings_are_not_found(drivers: DriverSet, pool: str) -> None:
    with pytest.raises(NotFoundError):
        drivers.storage.resize(drivers.host, pool, "nothing", GiB)
    with pytest.raises(NotFoundError):
        drivers.storage.clone(drivers.host, pool, VolumeDefinition(volume="d", size=GiB, backing="no-such-image"))
    with pytest.raises(NotFoundError):
        drivers.storage.monitor(drivers.host, "no-such-pool")


def test_a_datastore_holding_volumes_cannot_be_deleted(drivers: DriverSet, pool: str) -> None:
    drivers.storage.clone(drivers.host, pool, VolumeDefinition(volume="kept", size=GiB))
    with pytest.raises(ConflictError):
        drivers.storage.delete_datastore(drivers.host, pool)
    drivers.storage.delete(drivers.host, pool, "kept")
    drivers.storage.delete_datastore(drivers.host, pool)
    with pytest.raises(NotFoundError):
        drivers.storage.delete_datastore(drivers.host, pool)
