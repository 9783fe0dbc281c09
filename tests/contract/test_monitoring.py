"""Contract: probes of a host and of all its VMs, for every driver (see conftest)."""

from __future__ import annotations

from nebctl.drivers.states import HostLiveState, VMLiveState
from tests.contract.conftest import DriverSet, capabilities_on
from tests.contract.values import a_vm


def test_one_probe_returns_every_vm_of_the_host_with_its_state(drivers: DriverSet) -> None:
    running, stopped, suspended = a_vm("a"), a_vm("b"), a_vm("c")
    can_suspend = "suspend" in capabilities_on(drivers.virtualization, drivers.host)
    drivers.virtualization.deploy(drivers.host, running)
    drivers.virtualization.deploy(drivers.host, stopped, start=False)
    if can_suspend:  # a backend without pause (EC2) has running and stopped VMs only
        drivers.virtualization.deploy(drivers.host, suspended)
        drivers.virtualization.suspend(drivers.host, suspended.uuid)

    statuses = {status.uuid: status for status in drivers.monitoring.probe_vms(drivers.host)}

    assert {running.uuid, stopped.uuid} | ({suspended.uuid} if can_suspend else set()) <= set(statuses)
    assert statuses[running.uuid].state is VMLiveState.RUNNING
    assert statuses[stopped.uuid].state is VMLiveState.STOPPED
    if can_suspend:
        assert statuses[suspended.uuid].state is VMLiveState.SUSPENDED
    assert statuses[running.uuid].name == running.name
    assert statuses[running.uuid].memory == running.memory
    assert statuses[stopped.uuid].cpu_usage == 0


def test_an_empty_host_probes_to_no_vms(drivers: DriverSet) -> None:
    assert list(drivers.monitoring.probe_vms(drivers.host)) == []


def test_host_probe_reports_capacity_and_usage(drivers: DriverSet) -> None:
    vm = a_vm()
    drivers.virtualization.deploy(drivers.host, vm)
    probe = drivers.monitoring.probe_host(drivers.host)
    assert probe.state is HostLiveState.ONLINE
    assert probe.cpus > 0
    assert 0 <= probe.free_memory <= probe.memory - vm.memory
    assert 0.0 <= probe.cpu_usage <= 1.0
