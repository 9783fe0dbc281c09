"""Contract: the ownership written on live objects comes back whole (docs/ownership.md), for every driver.

A VM's ownership (stack, kind, name, incarnation, installation and the applied spec) is read back from the bulk
VM probe; a network's, pool's, image volume's and security group's from the monitoring driver's ``inventory``,
for the objects whose backend can carry it (the table below says which). libvirt keeps a network's in its
``<metadata>`` and a pool's, image volume's and filter's in the host's ownership ledger, an nwfilter: its test
hypervisor has no nwfilter, so there only networks carry one. EC2 keeps the identity fields in tags, without
the spec. Deleting an object takes its ownership with it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nebctl.drivers.errors import CapabilityError, DriverError
from nebctl.drivers.protocols import InventoryDriver, OwnershipDriver
from nebctl.drivers.types import (
    DatastoreDefinition,
    ImageImport,
    Ownership,
    SecurityGroupDefinition,
    SecurityRuleDefinition,
)
from tests.contract.conftest import DriverSet, capabilities_on
from tests.contract.values import a_network, a_vm

# The objects whose ownership each driver's inventory gives back (the written statement the listing is checked
# against); the others are listed without one.
LISTED: dict[str, frozenset[str]] = {
    "sim": frozenset({"network", "pool", "volume", "filter"}),
    "exec": frozenset({"network", "pool", "volume", "filter"}),
    "libvirt-qemu": frozenset({"network", "pool", "volume", "filter"}),
    "libvirt-test": frozenset({"network"}),
}

SPEC = {"vcpu": 1, "memory": 1073741824, "cloudInit": {"userData": "hmac-sha256:abc:def"}, "metadata": {"labels": {}}}


def owner(kind: str, name: str, incarnation: int = 0) -> Ownership:
    return Ownership("contract", kind, "default", name, incarnation, "install-1", {**SPEC, "of": name})


def _listed(drivers: DriverSet) -> frozenset[str]:
    return LISTED.get(drivers.name, frozenset())


def test_a_vm_s_ownership_comes_back_from_the_bulk_probe(drivers: DriverSet) -> None:
    written = owner("VirtualMachine", "web-1", incarnation=2)
    vm = a_vm()
    vm = type(vm)(**{**vm.__dict__, "owner": written})
    drivers.virtualization.deploy(drivers.host, vm, start=False)
    try:
        seen = {s.uuid: s for s in drivers.monitoring.probe_vms(drivers.host)}[vm.uuid].owner
        assert seen == written
        assert seen is not None and seen.incarnation == 2 and seen.installation == "install-1"
        if drivers.name != "ec2":  # EC2 tags hold 256 characters: no spec there (docs/ownership.md)
            assert seen.spec == written.spec
    finally:
        drivers.virtualization.undeploy(drivers.host, vm.uuid)


def test_other_objects_ownership_comes_back_from_the_inventory(drivers: DriverSet, tmp_path: Path) -> None:
    monitoring = drivers.monitoring
    if drivers.name == "ec2":
        # A cloud host holds no pools or filters of nebctl's; its driver lists only VMs.
        assert not isinstance(monitoring, InventoryDriver)
        return
    assert isinstance(monitoring, InventoryDriver)
    expected: dict[tuple[str, str], Ownership] = {}
    network = a_network("ownlan")
    network = type(network)(**{**network.__dict__, "owner": owner("Network", "ownlan")})
    drivers.network.create(drivers.host, network)
    expected["network", "ownlan"] = network.owner  # type: ignore[assignment]
    drivers.storage.create_datastore(
        drivers.host, DatastoreDefinition("ownpool", drivers.datastore_path, owner=owner("Datastore", "ownpool"))
    )
    expected["pool", "ownpool"] = owner("Datastore", "ownpool")
    source = tmp_path / "own.qcow2"
    source.write_bytes(b"QFI\xfb" + b"\0" * 4096)
    image = ImageImport("image-own", str(source), format="qcow2", owner=owner("Image", "own"))
    drivers.storage.import_image(drivers.host, "ownpool", image)
    expected["volume", "image-own"] = owner("Image", "own")
    if "security-groups" in capabilities_on(drivers.network, drivers.host):
        rules = (SecurityRuleDefinition("in", "tcp", ("22",)),)
        group = SecurityGroupDefinition("nebctl-sg-own", rules, owner=owner("SecurityGroup", "own"))
        drivers.network.update_sg(drivers.host, group)
        expected["filter", "nebctl-sg-own"] = owner("SecurityGroup", "own")
    listed = {(item.object, item.name): item.owner for item in monitoring.inventory(drivers.host)}
    for (what, name), written in expected.items():
        assert (what, name) in listed, (what, name)  # every object is listed, for drift
        if what in _listed(drivers):
            assert listed[what, name] == written, (what, name)
            assert listed[what, name].spec == written.spec  # type: ignore[union-attr]
        else:
            assert listed[what, name] is None, (what, name)  # libvirt's test hypervisor: no nwfilter, no ledger


# The objects whose ownership each driver writes again in place (``OwnershipDriver.own``); the others keep the
# ownership they were made with, and ``own`` says it cannot (``CapabilityError``).
OWNED_AGAIN: dict[str, frozenset[str]] = {
    "sim": frozenset({"vm", "network", "pool", "volume", "filter"}),
    "exec": frozenset({"vm", "network", "pool", "volume", "filter"}),
    "libvirt-qemu": frozenset({"vm", "pool", "volume", "filter"}),  # a network's XML only changes at its restart
    "libvirt-test": frozenset({"vm"}),  # no nwfilter there, so no ledger to write in
}


def test_an_ownership_written_again_comes_back_with_its_new_spec(drivers: DriverSet, tmp_path: Path) -> None:
    monitoring = drivers.monitoring
    if drivers.name == "ec2":
        assert not isinstance(drivers.monitoring, OwnershipDriver)  # tags without the spec: nothing to write again
        return
    assert isinstance(drivers.monitoring, OwnershipDriver)

    def relabelled(written: Ownership) -> Ownership:
        return dataclasses.replace(written, spec={**(written.spec or {}), "metadata": {"labels": {"tier": "new"}}})

    vm = a_vm("own-1")
    vm = dataclasses.replace(vm, owner=owner("VirtualMachine", "own-1"))
    drivers.virtualization.deploy(drivers.host, vm, start=False)
    written: dict[tuple[str, str], Ownership] = {("vm", vm.uuid): relabelled(owner("VirtualMachine", "own-1"))}
    network = dataclasses.replace(a_network("ownlan2"), owner=owner("Network", "ownlan2"))
    drivers.network.create(drivers.host, network)
    written["network", "ownlan2"] = relabelled(owner("Network", "ownlan2"))
    drivers.storage.create_datastore(
        drivers.host, DatastoreDefinition("ownpool2", drivers.datastore_path, owner=owner("Datastore", "ownpool2"))
    )
    written["pool", "ownpool2"] = relabelled(owner("Datastore", "ownpool2"))
    source = tmp_path / "own2.qcow2"
    source.write_bytes(b"QFI\xfb" + b"\0" * 4096)
    drivers.storage.import_image(
        drivers.host, "ownpool2", ImageImport("image-own2", str(source), format="qcow2", owner=owner("Image", "own2"))
    )
    written["volume", "image-own2"] = relabelled(owner("Image", "own2"))
    if "security-groups" in capabilities_on(drivers.network, drivers.host):
        rules = (SecurityRuleDefinition("in", "tcp", ("22",)),)
        group = SecurityGroupDefinition("nebctl-sg-own2", rules, owner=owner("SecurityGroup", "own2"))
        drivers.network.update_sg(drivers.host, group)
        written["filter", "nebctl-sg-own2"] = relabelled(owner("SecurityGroup", "own2"))
    try:
        for (what, name), new in written.items():
            pool = "ownpool2" if what == "volume" else ""
            if what in OWNED_AGAIN[drivers.name]:
                monitoring.own(drivers.host, what, name, new, pool=pool)
            else:
                with pytest.raises(CapabilityError):
                    monitoring.own(drivers.host, what, name, new, pool=pool)
        seen = {("vm", s.uuid): s.owner for s in monitoring.probe_vms(drivers.host)}
        seen |= {(item.object, item.name): item.owner for item in monitoring.inventory(drivers.host)}
        for (what, name), new in written.items():
            if what in OWNED_AGAIN[drivers.name]:
                got = seen[what, name]
                assert got == new and got is not None and got.spec == new.spec, (what, name)
            elif seen.get((what, name)) is not None:
                assert seen[what, name].spec == owner(new.kind, new.name).spec, (what, name)
        # What is not there cannot be written on.
        with pytest.raises(DriverError):
            monitoring.own(drivers.host, "vm", a_vm("own-none").uuid, written["vm", vm.uuid])
    finally:
        drivers.virtualization.undeploy(drivers.host, vm.uuid)
