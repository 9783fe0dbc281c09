"""The libvirt storage driver's repair of a pool moved by hand (``create_datastore`` on a pool that exists at
another path), on the real qemu:///system daemon of tests/support/libvirtd.py.

A pool this datastore's ledger entry claims is defined again at the declared path, with its UUID, and its
volume file is left where it is (the same inode, listed again); a pool made without nebctl, or another stack's,
is not moved: a conflict, and the pool keeps its path. The expected paths and answers are the test's own.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from nebctl.drivers.errors import ConflictError
from nebctl.drivers.types import DatastoreDefinition, Ownership, VolumeDefinition
from tests.contract.conftest import DriverSet
from tests.libvirt.contract_drivers import build_libvirt_qemu

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(300)]

OWNER = Ownership("movestack", "Datastore", "default", "mvpool", 0, "move-test-installation")


@pytest.fixture
def drivers(tmp_path: Path) -> Iterator[DriverSet]:
    with build_libvirt_qemu(tmp_path) as driver_set:
        yield driver_set


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True, text=True).stdout


def move_by_hand(pool: str, path: Path, tmp_path: Path) -> None:
    xml = virsh("pool-dumpxml", "--inactive", pool)
    edited = tmp_path / "pool.xml"
    edited.write_text(re.sub(r"<path>[^<]*</path>", f"<path>{path}</path>", xml, count=1))
    virsh("pool-define", str(edited))
    virsh("pool-destroy", pool)
    virsh("pool-start", pool)


def path_of(pool: str) -> str:
    connection = libvirt.open("qemu:///system")
    try:
        handle = connection.storagePoolLookupByName(pool)
        return str(handle.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE).split("<path>")[1].split("</path>")[0])
    finally:
        connection.close()


def test_its_own_pool_is_defined_again_where_it_was(drivers: DriverSet, tmp_path: Path) -> None:
    declared, other = Path(drivers.datastore_path), tmp_path / "other"
    other.mkdir()
    drivers.storage.create_datastore(drivers.host, DatastoreDefinition("mvpool", str(declared), owner=OWNER))
    drivers.storage.clone(drivers.host, "mvpool", VolumeDefinition(volume="data", size=1024**2, format="raw"))
    inode = (declared / "data").stat().st_ino
    uuid = virsh("pool-uuid", "mvpool").strip()
    move_by_hand("mvpool", other, tmp_path)
    assert drivers.storage.monitor(drivers.host, "mvpool").volumes == {}  # the pool lists the empty place

    status = drivers.storage.create_datastore(drivers.host, DatastoreDefinition("mvpool", str(declared), owner=OWNER))
    assert set(status.volumes) == {"data"}
    assert (declared / "data").stat().st_ino == inode and not any(other.iterdir())
    assert path_of("mvpool") == str(declared) and virsh("pool-uuid", "mvpool").strip() == uuid


@pytest.mark.parametrize("made_by", ["hand", "another stack"])
def test_a_pool_not_this_datastore_s_is_not_moved(drivers: DriverSet, tmp_path: Path, made_by: str) -> None:
    declared, elsewhere = Path(drivers.datastore_path), tmp_path / "elsewhere"
    elsewhere.mkdir()
    if made_by == "hand":
        virsh("pool-define-as", "mvpool", "dir", "--target", str(elsewhere))
        virsh("pool-start", "mvpool")
    else:
        theirs = Ownership("otherstack", "Datastore", "default", "mvpool", 0, "move-test-installation")
        drivers.storage.create_datastore(drivers.host, DatastoreDefinition("mvpool", str(elsewhere), owner=theirs))
    with pytest.raises(ConflictError, match=f"pool mvpool exists with path {elsewhere}, not {declared}"):
        drivers.storage.create_datastore(drivers.host, DatastoreDefinition("mvpool", str(declared), owner=OWNER))
    assert path_of("mvpool") == str(elsewhere)
