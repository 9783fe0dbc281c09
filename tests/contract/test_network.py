"""Contract: networks, NIC preparation and cleaning, security groups, for every driver (see conftest)."""

from __future__ import annotations

import ipaddress

import pytest

from nebctl.drivers.errors import CapabilityError, ConflictError, NotFoundError
from nebctl.drivers.types import SecurityGroupDefinition, SecurityRuleDefinition
from tests.contract.conftest import DriverSet, capabilities_on
from tests.contract.values import a_network, a_nic, a_vm


def _leases(drivers: DriverSet, network: str) -> dict[str, str]:
    return dict(drivers.network.monitor(drivers.host)[network].leases)


def test_create_is_idempotent_and_shows_in_monitor(drivers: DriverSet) -> None:
    first = drivers.network.create(drivers.host, a_network())
    second = drivers.network.create(drivers.host, a_network())
    assert first.name == second.name == "lan"
    assert first.active
    # A real host may have networks of its own (libvirt's "default"): only ours is checked.
    assert drivers.network.monitor(drivers.host)["lan"].active


def test_pre_leases_an_address_of_the_range_and_clean_releases_it(drivers: DriverSet) -> None:
    drivers.network.create(drivers.host, a_network())
    vm, nic = a_vm(), a_nic()
    drivers.network.pre(drivers.host, vm.uuid, nic)
    drivers.network.pre(drivers.host, vm.uuid, nic)  # twice: still one lease
    leases = _leases(drivers, "lan")
    assert list(leases) == [nic.mac]
    address = ipaddress.IPv4Address(leases[nic.mac])
    assert ipaddress.IPv4Address("10.20.0.10") <= address <= ipaddress.IPv4Address("10.20.0.50")
    drivers.network.post(drivers.host, vm.uuid, nic)
    drivers.network.clean(drivers.host, vm.uuid, nic)
    assert _leases(drivers, "lan") == {}


def test_a_static_address_is_leased_as_asked_and_not_twice(drivers: DriverSet) -> None:
    drivers.network.create(drivers.host, a_network())
    nic = a_nic(ip="10.20.0.42")
    drivers.network.pre(drivers.host, a_vm().uuid, nic)
    assert _leases(drivers, "lan") == {nic.mac: "10.20.0.42"}
    with pytest.raises(ConflictError):
        drivers.network.pre(drivers.host, a_vm().uuid, a_nic(ip="10.20.0.42", index=2))


def test_nic_actions_on_a_missing_network_are_not_found(drivers: DriverSet) -> None:
    for action in ("pre", "post", "clean"):
        with pytest.raises(NotFoundError):
            getattr(drivers.network, action)(drivers.host, a_vm().uuid, a_nic("missing"))


def test_a_network_with_nics_cannot_be_deleted_until_they_are_cleaned(drivers: DriverSet) -> None:
    drivers.network.create(drivers.host, a_network())
    vm, nic = a_vm(), a_nic()
    drivers.network.pre(drivers.host, vm.uuid, nic)
    with pytest.raises(ConflictError):
        drivers.network.delete(drivers.host, "lan")
    drivers.network.clean(drivers.host, vm.uuid, nic)
    drivers.network.delete(drivers.host, "lan")
    assert "lan" not in drivers.network.monitor(drivers.host)
    with pytest.raises(NotFoundError):
        drivers.network.delete(drivers.host, "lan")


def test_security_groups_are_replaced_and_deleted(drivers: DriverSet) -> None:
    ssh = SecurityGroupDefinition(name="ssh", rules=(SecurityRuleDefinition("in", "tcp", ("22",)),))
    if not {"security-groups", "update_sg"} & capabilities_on(drivers.network, drivers.host):
        # A backend without filters (libvirt's test hypervisor) says so by declaration and by its error.
        with pytest.raises(CapabilityError):
            drivers.network.update_sg(drivers.host, ssh)
        return
    drivers.network.update_sg(drivers.host, ssh)
    drivers.network.update_sg(drivers.host, SecurityGroupDefinition(name="ssh", rules=()))
    drivers.network.delete_sg(drivers.host, "ssh")
    with pytest.raises(NotFoundError):
        drivers.network.delete_sg(drivers.host, "ssh")
