"""Contract: the virtualization family's actions mean the same for every driver (see conftest)."""

from __future__ import annotations

import dataclasses

import pytest

from nebctl.drivers.errors import CapabilityError, ConflictError, DriverError, NotFoundError
from nebctl.drivers.states import VMLiveState
from tests.conftest import in_ci
from tests.contract.conftest import DriverSet, capabilities_on
from tests.contract.values import GiB, a_vm


def _vms_on_host(drivers: DriverSet) -> dict[str, VMLiveState]:
    return {status.uuid: status.state for status in drivers.monitoring.probe_vms(drivers.host)}


def test_deploying_twice_gives_one_running_vm(drivers: DriverSet) -> None:
    vm = a_vm()
    first = drivers.virtualization.deploy(drivers.host, vm)
    second = drivers.virtualization.deploy(drivers.host, vm)
    assert (first.uuid, first.state) == (vm.uuid, VMLiveState.RUNNING)
    assert (second.uuid, second.state) == (vm.uuid, VMLiveState.RUNNING)
    assert [uuid for uuid in _vms_on_host(drivers) if uuid == vm.uuid] == [vm.uuid]
    polled = drivers.virtualization.poll(drivers.host, vm.uuid)
    assert (polled.name, polled.vcpu, polled.memory) == (vm.name, vm.vcpu, vm.memory)


def test_deploy_without_start_defines_a_stopped_vm_that_a_second_deploy_starts(drivers: DriverSet) -> None:
    vm = a_vm()
    assert drivers.virtualization.deploy(drivers.host, vm, start=False).state is VMLiveState.STOPPED
    assert drivers.virtualization.poll(drivers.host, vm.uuid).state is VMLiveState.STOPPED
    assert drivers.virtualization.deploy(drivers.host, vm).state is VMLiveState.RUNNING


def test_a_stopped_vm_takes_the_new_definition(drivers: DriverSet) -> None:
    vm = a_vm(memory=GiB)
    drivers.virtualization.deploy(drivers.host, vm, start=False)
    bigger = dataclasses.replace(vm, memory=2 * GiB, vcpu=2)
    status = drivers.virtualization.deploy(drivers.host, bigger)
    assert (status.memory, status.vcpu) == (2 * GiB, 2)


def test_running_shutdown_stopped_and_shutdown_again_is_harmless(drivers: DriverSet) -> None:
    vm = a_vm()
    drivers.virtualization.deploy(drivers.host, vm)
    drivers.virtualization.shutdown(drivers.host, vm.uuid, timeout=5)
    assert drivers.virtualization.poll(drivers.host, vm.uuid).state is VMLiveState.STOPPED
    drivers.virtualization.shutdown(drivers.host, vm.uuid, timeout=5)
    assert drivers.virtualization.poll(drivers.host, vm.uuid).state is VMLiveState.STOPPED


def test_cancel_stops_at_once(drivers: DriverSet) -> None:
    vm = a_vm()
    drivers.virtualization.deploy(drivers.host, vm)
    drivers.virtualization.cancel(drivers.host, vm.uuid)
    assert drivers.virtualization.poll(drivers.host, vm.uuid).state is VMLiveState.STOPPED


def test_suspend_and_resume(drivers: DriverSet) -> None:
    vm = a_vm()
    drivers.virtualization.deploy(drivers.host, vm)
    if "suspend" not in capabilities_on(drivers.virtualization, drivers.host):
        # A backend without pause (an EC2 instance) says so by declaration and by its error, and the VM runs on.
        for action in ("suspend", "resume"):
            with pytest.raises(CapabilityError):
                getattr(drivers.virtualization, action)(drivers.host, vm.uuid)
        assert drivers.virtualization.poll(drivers.host, vm.uuid).state is VMLiveState.RUNNING
        return
    drivers.virtualization.suspend(drivers.host, vm.uuid)
    assert drivers.virtualization.poll(drivers.host, vm.uuid).state is VMLiveState.SUSPENDED
    drivers.virtualization.resume(drivers.host, vm.uuid)
    assert drivers.virtualization.poll(drivers.host, vm.uuid).state is VMLiveState.RUNNING


def test_reboot_keeps_a_running_vm_running(drivers: DriverSet) -> None:
    vm = a_vm()
    drivers.virtualization.deploy(drivers.host, vm)
    drivers.virtualization.reboot(drivers.host, vm.uuid)
    assert drivers.virtualization.poll(drivers.host, vm.uuid).state is VMLiveState.RUNNING


@pytest.mark.parametrize("action", ["suspend", "resume", "reboot"])
def test_actions_that_need_a_running_vm_refuse_a_stopped_one(drivers: DriverSet, action: str) -> None:
    vm = a_vm()
    drivers.virtualization.deploy(drivers.host, vm, start=False)
    refused = ConflictError if action in capabilities_on(drivers.virtualization, drivers.host) else CapabilityError
    with pytest.raises(refused):
        getattr(drivers.virtualization, action)(drivers.host, vm.uuid)
    assert drivers.virtualization.poll(drivers.host, vm.uuid).state is VMLiveState.STOPPED


def test_undeploy_removes_the_vm(drivers: DriverSet) -> None:
    vm, other = a_vm(), a_vm("web-2")
    drivers.virtualization.deploy(drivers.host, vm)
    drivers.virtualization.deploy(drivers.host, other)
    drivers.virtualization.undeploy(drivers.host, vm.uuid)
    remaining = _vms_on_host(drivers)
    assert vm.uuid not in remaining
    assert other.uuid in remaining
    with pytest.raises(NotFoundError):
        drivers.virtualization.poll(drivers.host, vm.uuid)


@pytest.mark.parametrize("action", ["cancel", "reboot", "suspend", "resume", "undeploy", "poll"])
def test_actions_on_a_missing_vm_raise_not_found(drivers: DriverSet, action: str) -> None:
    with pytest.raises(NotFoundError) as raised:
        getattr(drivers.virtualization, action)(drivers.host, a_vm().uuid)
    assert isinstance(raised.value, DriverError) and not raised.value.temporary


def test_shutdown_of_a_missing_vm_raises_not_found(drivers: DriverSet) -> None:
    with pytest.raises(NotFoundError):
        drivers.virtualization.shutdown(drivers.host, a_vm().uuid, timeout=1)


def test_migrate_moves_the_vm_and_is_idempotent(drivers: DriverSet) -> None:
    """Asked live. What each set does: sim and exec move the VM in their state files; libvirt-qemu live-migrates
    a QEMU domain from qemu:///system to a second, private libvirtd (tests/support/libvirtd_peer.py);
    libvirt-test migrates cold, libvirt's test hypervisor having no migration (the driver falls back)."""
    if "migrate" not in capabilities_on(drivers.virtualization, drivers.host):
        # A backend that cannot move VMs between hosts (a cloud) says so by declaration and by its error.
        vm = a_vm()
        drivers.virtualization.deploy(drivers.host, vm)
        with pytest.raises(CapabilityError):
            drivers.virtualization.migrate(drivers.host, drivers.host, vm, live=True)
        assert drivers.virtualization.poll(drivers.host, vm.uuid).state is VMLiveState.RUNNING
        return
    if drivers.second_host is None:
        reason = f"{drivers.name}: no second host to migrate to: {drivers.no_second_host or 'the set has none'}"
        if drivers.no_second_host and not in_ci():
            pytest.skip(reason)
        pytest.fail(reason)
    vm = a_vm()
    drivers.virtualization.deploy(drivers.host, vm)
    moved = drivers.virtualization.migrate(drivers.host, drivers.second_host, vm, live=True)
    assert (moved.uuid, moved.state) == (vm.uuid, VMLiveState.RUNNING)
    assert vm.uuid not in _vms_on_host(drivers)
    assert vm.uuid in {s.uuid for s in drivers.monitoring.probe_vms(drivers.second_host)}
    again = drivers.virtualization.migrate(drivers.host, drivers.second_host, vm, live=True)
    assert again.uuid == vm.uuid
    with pytest.raises(NotFoundError):
        drivers.virtualization.poll(drivers.host, vm.uuid)
