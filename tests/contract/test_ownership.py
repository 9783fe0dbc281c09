"""Contract: the ownership written on live objects comes back whole (docs/ownership.md), for every driver.

A VM's ownership (stack, kind, name, incarnation, installation and the applied spec) is read back from the bulk
VM probe; a network's, pool's, image volume's and security group's from the monitoring driver's ``inventory``,
for the objects whose backend can carry it (the table below says which). libvirt keeps a network's in its
``<metadata>`` and a pool's, image volume's and filter's in the host's ownership ledger, an nwfilter: its test
hypervisor has no nwfilter, so there only networks carry one. EC2 keeps the identity fields in tags, without
the spec. Deleting an object takes its ownership with it.
"""

from __future__ import annotations

from pathlib import Path

from nebctl.drivers.protocols import InventoryDriver
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
