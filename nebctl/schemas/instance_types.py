"""Sizes of the EC2 instance types nebctl knows, and the smallest of a set that fits a VM.

Pure data and functions: the Host model checks a cloud host's capacity map against this table, the planner
turns the map into placement slots, and the EC2 driver picks a type for a VM that names none. The figures are
the published vCPU and memory of each type; a type missing here can still be used when the Host's
``cloud.instanceTypes`` gives its size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpu: int
    memory: int  # bytes


def _types(*rows: tuple[str, int, int]) -> dict[str, InstanceType]:
    return {name: InstanceType(name, vcpu, memory) for name, vcpu, memory in rows}


KNOWN: Mapping[str, InstanceType] = _types(
    ("t3.nano", 2, 512 * MiB),
    ("t3.micro", 2, 1 * GiB),
    ("t3.small", 2, 2 * GiB),
    ("t3.medium", 2, 4 * GiB),
    ("t3.large", 2, 8 * GiB),
    ("t3.xlarge", 4, 16 * GiB),
    ("t3.2xlarge", 8, 32 * GiB),
    ("m5.large", 2, 8 * GiB),
    ("m5.xlarge", 4, 16 * GiB),
    ("m5.2xlarge", 8, 32 * GiB),
    ("m5.4xlarge", 16, 64 * GiB),
    ("c5.large", 2, 4 * GiB),
    ("c5.xlarge", 4, 8 * GiB),
    ("c5.2xlarge", 8, 16 * GiB),
    ("c5.4xlarge", 16, 32 * GiB),
    ("r5.large", 2, 16 * GiB),
    ("r5.xlarge", 4, 32 * GiB),
    ("r5.2xlarge", 8, 64 * GiB),
)


def size_key(kind: InstanceType) -> tuple[int, int, str]:
    """Smaller first: memory, then vCPUs, then the name (so the choice is deterministic)."""
    return (kind.memory, kind.vcpu, kind.name)


def smallest_fitting(types: Iterable[InstanceType], vcpu: int, memory: int) -> InstanceType | None:
    """The smallest type with at least ``vcpu`` vCPUs and ``memory`` bytes, or None when none is big enough."""
    fitting = [kind for kind in types if kind.vcpu >= vcpu and kind.memory >= memory]
    return min(fitting, key=size_key) if fitting else None
