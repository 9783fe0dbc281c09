"""Values the contract tests pass to drivers: VM definitions with fresh identities, a network, a NIC."""

from __future__ import annotations

import uuid

from nebctl.drivers.types import NetworkDefinition, NicDefinition, Ownership, VMDefinition

GiB = 1024**3


def a_vm(name: str = "web-1", *, vcpu: int = 1, memory: int = GiB) -> VMDefinition:
    return VMDefinition(
        name=f"{name}-{uuid.uuid4().hex[:6]}",
        uuid=str(uuid.uuid4()),
        vcpu=vcpu,
        memory=memory,
        owner=Ownership(stack="contract", kind="VirtualMachine", namespace="default", name=name),
    )


def a_network(name: str = "lan") -> NetworkDefinition:
    return NetworkDefinition(
        name=name,
        mode="nat",
        cidr="10.20.0.0/24",
        gateway="10.20.0.1",
        range_first="10.20.0.10",
        range_last="10.20.0.50",
    )


def a_nic(network: str = "lan", *, ip: str | None = None, index: int = 1) -> NicDefinition:
    return NicDefinition(network=network, mac=f"52:54:00:00:00:{index:02x}", ip=ip)
