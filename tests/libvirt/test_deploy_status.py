"""Deploy answers with the status of what it defined from fewer round trips than a poll (bench/libvirt_apply.py
measures why); that status must be the one a poll then reads, started or not, and with the domain's owner."""

from __future__ import annotations

import uuid

import pytest

from nebctl.drivers.types import HostRef, Ownership, VMDefinition
from tests.libvirt.conftest import Drivers

OWNER = Ownership(stack="deploy-status", kind="VirtualMachine", namespace="default", name="vm")


@pytest.mark.parametrize("start", [True, False], ids=["started", "defined-only"])
def test_deploy_status_is_what_a_poll_reads(drivers: Drivers, test_host: HostRef, prefix: str, start: bool) -> None:
    name = f"{prefix}-status-{int(start)}"
    vm = VMDefinition(name=name, uuid=str(uuid.uuid4()), vcpu=2, memory=256 * 1024**2, owner=OWNER)
    try:
        deployed = drivers.virt.deploy(test_host, vm, start=start)
        assert deployed == drivers.virt.poll(test_host, vm.uuid)
        assert deployed.owner == OWNER and deployed.vcpu == 2 and deployed.memory == 256 * 1024**2
        assert drivers.virt.deploy(test_host, vm, start=start) == deployed  # idempotent, same answer
    finally:
        drivers.virt.undeploy(test_host, vm.uuid)
