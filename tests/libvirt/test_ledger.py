"""The ownership ledger of libvirt pools, image volumes and filters (nebctl/drivers/libvirt/ledger.py), on the
real qemu:///system daemon of tests/support/libvirtd.py, through the drivers the registry builds.

What is checked against what: the ownership each object was made with (the test's own values) comes back from
the inventory, with the details written at import; the ledger is an nwfilter the inventory does not list as a
filter; deleting an object takes its entry (the ledger goes with its last one); an object deleted behind
nebctl's back and made again by someone else under the same name is not taken as nebctl's; an entry that does
not read is ignored and the others still are read; concurrent writers in one process lose no entry.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from nebctl.drivers.libvirt import ledger
from nebctl.drivers.types import (
    DatastoreDefinition,
    ImageImport,
    OwnedObject,
    Ownership,
    SecurityGroupDefinition,
    SecurityRuleDefinition,
    VolumeDefinition,
)
from tests.contract.conftest import DriverSet
from tests.libvirt.contract_drivers import build_libvirt_qemu

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(300)]

INSTALLATION = "ledger-test-installation"
RULES = (SecurityRuleDefinition("in", "tcp", ("22",)),)


def owner(kind: str, name: str, stack: str = "ledgerstack") -> Ownership:
    return Ownership(stack, kind, "default", name, 0, INSTALLATION, {"of": name, "secret": "hmac-sha256:k:d"})


@pytest.fixture
def drivers(tmp_path: Path) -> Iterator[DriverSet]:
    with build_libvirt_qemu(tmp_path) as driver_set:
        yield driver_set


def virsh(*args: str) -> None:
    subprocess.run(["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True)


def listed(drivers: DriverSet) -> dict[tuple[str, str], list[OwnedObject]]:
    found: dict[tuple[str, str], list[OwnedObject]] = {}
    for item in drivers.monitoring.inventory(drivers.host):
        found.setdefault((item.object, item.name), []).append(item)
    return found


def filter_names() -> set[str]:
    connection = libvirt.open("qemu:///system")
    try:
        return {f.name() for f in connection.listAllNWFilters(0)}
    finally:
        connection.close()


def an_image(tmp_path: Path, name: str) -> tuple[Path, str]:
    """A real qcow2 file of 1 MiB virtual size, and its sha256."""
    source = tmp_path / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(source), "1M"], check=True)
    return source, hashlib.sha256(source.read_bytes()).hexdigest()


def test_ownership_is_read_back_and_goes_with_the_object(drivers: DriverSet, tmp_path: Path) -> None:
    ledger_name = ledger.ledger_name(owner("Datastore", "lgpool"))
    assert ledger_name == f"nebctl-owner-ledgerstack-{INSTALLATION}"
    drivers.storage.create_datastore(
        drivers.host, DatastoreDefinition("lgpool", drivers.datastore_path, owner=owner("Datastore", "lgpool"))
    )
    source, digest = an_image(tmp_path, "base")
    image = ImageImport("image-lg", str(source), sha256=digest, format="qcow2", owner=owner("Image", "lg"))
    drivers.storage.import_image(drivers.host, "lgpool", image)
    drivers.network.update_sg(
        drivers.host, SecurityGroupDefinition("nebctl-sg-lg", RULES, owner("SecurityGroup", "lg"))
    )

    found = listed(drivers)
    assert [i.owner for i in found["pool", "lgpool"]] == [owner("Datastore", "lgpool")]
    (volume,) = found["volume", "image-lg"]
    assert volume.owner == owner("Image", "lg")
    assert volume.owner.spec == {"of": "lg", "secret": "hmac-sha256:k:d"}
    # What was written at import: the file's digest (computed here), its format and virtual size (qemu-img's).
    assert volume.details["sha256"] == digest
    assert volume.details["format"] == "qcow2"
    assert volume.details["capacity"] == 1024 * 1024
    assert volume.details["pool"] == "lgpool"
    assert [i.owner for i in found["filter", "nebctl-sg-lg"]] == [owner("SecurityGroup", "lg")]
    assert ("filter", ledger_name) not in found  # the ledger is not a filter of anybody's
    assert ledger_name in filter_names()

    # A VM disk cloned in the pool gets no entry: its VM's domain carries the ownership.
    disk = VolumeDefinition("lg-disk-0", None, backing="image-lg", owner=owner("VirtualMachine", "lg"))
    drivers.storage.clone(drivers.host, "lgpool", disk)
    assert [i.owner for i in listed(drivers)["volume", "lg-disk-0"]] == [None]
    drivers.storage.delete(drivers.host, "lgpool", "lg-disk-0")

    # Deleting each object takes its entry; the ledger goes with the last one.
    drivers.network.delete_sg(drivers.host, "nebctl-sg-lg")
    drivers.storage.delete(drivers.host, "lgpool", "image-lg")
    connection = libvirt.open("qemu:///system")
    try:
        entries = ledger.read_all(connection)
    finally:
        connection.close()
    assert {(e.object, e.name) for e in entries if e.owner.stack == "ledgerstack"} == {("pool", "lgpool")}
    drivers.storage.delete_datastore(drivers.host, "lgpool")
    assert ledger_name not in filter_names()


def test_an_object_made_again_by_someone_else_is_not_taken(drivers: DriverSet, tmp_path: Path) -> None:
    drivers.storage.create_datastore(
        drivers.host, DatastoreDefinition("lgpool2", drivers.datastore_path, owner=owner("Datastore", "lgpool2"))
    )
    drivers.network.update_sg(
        drivers.host, SecurityGroupDefinition("nebctl-sg-lg2", RULES, owner("SecurityGroup", "lg2"))
    )
    assert listed(drivers)["pool", "lgpool2"][0].owner is not None
    # Deleted behind nebctl's back, then made by hand under the same names (new UUIDs).
    virsh("pool-destroy", "lgpool2")
    virsh("pool-undefine", "lgpool2")
    virsh("nwfilter-undefine", "nebctl-sg-lg2")
    virsh("pool-define-as", "lgpool2", "dir", "--target", str(tmp_path / "other"))
    (tmp_path / "other").mkdir()
    virsh("pool-start", "lgpool2")
    hand_made = tmp_path / "filter.xml"
    hand_made.write_text("<filter name='nebctl-sg-lg2' chain='root'><rule action='accept' direction='in' "
                         "priority='500'><all/></rule></filter>")  # fmt: skip
    virsh("nwfilter-define", str(hand_made))
    found = listed(drivers)
    assert [i.owner for i in found["pool", "lgpool2"]] == [None]
    assert [i.owner for i in found["filter", "nebctl-sg-lg2"]] == [None]
    # The stale entries go at the ledger's next write.
    drivers.storage.create_datastore(
        drivers.host, DatastoreDefinition("lgpool3", str(tmp_path / "third"), owner=owner("Datastore", "lgpool3"))
    )
    connection = libvirt.open("qemu:///system")
    try:
        names = {(e.object, e.name) for e in ledger.read_all(connection) if e.owner.stack == "ledgerstack"}
    finally:
        connection.close()
    assert names == {("pool", "lgpool3")}


def test_an_entry_that_does_not_read_is_ignored(
    drivers: DriverSet, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    drivers.network.update_sg(
        drivers.host, SecurityGroupDefinition("nebctl-sg-lg4", RULES, owner("SecurityGroup", "lg4"))
    )
    name = ledger.ledger_name(owner("SecurityGroup", "lg4"))
    connection = libvirt.open("qemu:///system")
    try:
        xml = connection.nwfilterLookupByName(name).XMLDesc(0)
        damaged = xml.replace(
            "</filter>",
            f"<filterref filter='{ledger.ENTRY_FILTER}'><parameter name='ENTRY' value='{b'{not json'.hex()}'/>"
            "</filterref></filter>",
        )
        connection.nwfilterDefineXML(damaged)
    finally:
        connection.close()
    with caplog.at_level(logging.WARNING, logger="nebctl.drivers.libvirt.ledger"):
        found = listed(drivers)
    assert [i.owner for i in found["filter", "nebctl-sg-lg4"]] == [owner("SecurityGroup", "lg4")]
    assert any("does not read is ignored" in record.getMessage() for record in caplog.records)


def test_concurrent_writers_in_one_process_lose_no_entry(drivers: DriverSet) -> None:
    groups = [f"nebctl-sg-lgc{index}" for index in range(8)]

    def define(group: str) -> None:
        drivers.network.update_sg(drivers.host, SecurityGroupDefinition(group, RULES, owner("SecurityGroup", group)))

    threads = [threading.Thread(target=define, args=(group,)) for group in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = listed(drivers)
    for group in groups:
        assert [i.owner for i in found["filter", group]] == [owner("SecurityGroup", group)]
