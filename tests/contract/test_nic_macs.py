"""Contract: a VM's status carries the MACs of its NICs, in the order of its definition, whether it comes from
deploy, poll or a host's bulk probe (``nebctl import`` records them, so an adopted VM keeps its MACs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.conftest import BUILDERS, NIC_MAC_PARAMS, DriverSet
from tests.contract.values import a_network, a_nic, a_vm


@pytest.fixture(params=NIC_MAC_PARAMS)
def drivers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DriverSet]:
    """The sets whose NICs have nebctl's MACs (conftest's ``drivers`` without the cloud's)."""
    with BUILDERS[request.param](tmp_path) as driver_set:
        yield driver_set


@pytest.mark.parametrize("start", [True, False], ids=["running", "defined"])
def test_every_status_of_a_vm_lists_its_nics_macs_in_order(drivers: DriverSet, start: bool) -> None:
    drivers.network.create(drivers.host, a_network())
    # Not in sorted order, so that an order of the driver's own (sorted, hashed) would show.
    vm = dataclasses.replace(a_vm(), nics=(a_nic(index=0x37), a_nic(index=0x05)))
    expected = ("52:54:00:00:00:37", "52:54:00:00:00:05")
    bare = a_vm("bare")

    deployed = drivers.virtualization.deploy(drivers.host, vm, start=start)
    drivers.virtualization.deploy(drivers.host, bare, start=start)
    probed = {status.uuid: status for status in drivers.monitoring.probe_vms(drivers.host)}

    assert deployed.macs == expected
    assert drivers.virtualization.poll(drivers.host, vm.uuid).macs == expected
    assert probed[vm.uuid].macs == expected
    assert probed[bare.uuid].macs == ()  # no NIC: known to have none, not unknown
    drivers.virtualization.undeploy(drivers.host, vm.uuid)
    drivers.virtualization.undeploy(drivers.host, bare.uuid)
