"""Bursting decision tables: cloud hosts with a capacity map of instance types, ranked after local hosts unless
a VM's ``placement.burst`` or a host's tier says otherwise. Every expectation is worked out by hand from the
sizes in the table below (the published sizes of the types)."""

from __future__ import annotations

from typing import Any

import pytest

from nebctl.controller.placement import HostCandidate, PlacementRequest, place
from nebctl.core.quantities import parse_quantity
from nebctl.schemas.instance_types import KNOWN
from nebctl.schemas.models import Placement

GI = 1024**3


def local(name: str, cpus: int = 4, memory: str = "8Gi", **fields: Any) -> HostCandidate:
    return HostCandidate(name, cpus=cpus, memory=parse_quantity(memory), **fields)


def cloud(name: str, capacity: dict[str, int], tier: int = 1, **fields: Any) -> HostCandidate:
    slots = {kind: (KNOWN[kind], count) for kind, count in capacity.items()}
    return HostCandidate(name, cloud=True, tier=tier, slots=slots, **fields)


def vm(name: str, vcpu: int = 1, memory: str = "1Gi", current: str | None = None, **placement: Any) -> PlacementRequest:
    return PlacementRequest(name, vcpu, parse_quantity(memory), 0, Placement(**placement), current_host=current)


def decide(requests: list[PlacementRequest], hosts: list[HostCandidate]) -> dict[str, tuple[str | None, str | None]]:
    return {d.vm: (d.host, d.instance_type) for d in place(requests, hosts)}


CASES = [
    (
        "local first: a VM that fits locally stays local even though the cloud host sorts first by name",
        [local("zlocal"), cloud("aws", {"t3.small": 10})],
        [vm("x")],
        {"x": ("zlocal", None)},
    ),
    (
        # zlocal has 8Gi: x (3Gi), y (3Gi) fit; z (3Gi) finds 2Gi left and bursts to the smallest type with
        # 2 vCPU >= 1 and memory >= 3Gi: t3.medium (4Gi) before t3.large (8Gi).
        "overflow bursts to the smallest type that fits",
        [local("zlocal"), cloud("aws", {"t3.large": 4, "t3.medium": 1})],
        [vm("x", memory="3Gi"), vm("y", memory="3Gi"), vm("z", memory="3Gi")],
        {"x": ("zlocal", None), "y": ("zlocal", None), "z": ("aws", "t3.medium")},
    ),
    (
        # One t3.medium: the first overflow VM (by name, equal sizes) takes it, the next takes a t3.large.
        "counts run out and the next type up is taken",
        [local("zlocal", memory="1Gi"), cloud("aws", {"t3.large": 4, "t3.medium": 1})],
        [vm("p", memory="3Gi"), vm("q", memory="3Gi")],
        {"p": ("aws", "t3.medium"), "q": ("aws", "t3.large")},
    ),
    (
        "an exhausted map leaves the VM unplaced",
        [local("zlocal", memory="1Gi"), cloud("aws", {"t3.small": 1})],
        [vm("p", memory="2Gi"), vm("q", memory="2Gi")],
        {"p": ("aws", "t3.small"), "q": (None, None)},
    ),
    (
        "burst: first puts the VM on the cloud although the local host has room",
        [local("zlocal"), cloud("aws", {"t3.small": 2})],
        [vm("x", burst="first"), vm("y")],
        {"x": ("aws", "t3.small"), "y": ("zlocal", None)},
    ),
    (
        "burst: never keeps the VM off the cloud, unplaced when local hosts are full",
        [local("zlocal", memory="1Gi"), cloud("aws", {"t3.small": 2})],
        [vm("x", memory="2Gi", burst="never")],
        {"x": (None, None)},
    ),
    (
        "instanceType is taken as asked, not the smallest",
        [local("zlocal", memory="1Gi"), cloud("aws", {"t3.small": 2, "m5.large": 1})],
        [vm("x", memory="2Gi", instanceType="m5.large")],
        {"x": ("aws", "m5.large")},
    ),
    (
        "instanceType keeps a VM off hosts that have no instance types",
        [local("zlocal"), cloud("aws", {"t3.small": 1})],
        [vm("x", instanceType="t3.small")],
        {"x": ("aws", "t3.small")},
    ),
    (
        "instanceType too small for the VM is refused",
        [cloud("aws", {"t3.small": 5})],
        [vm("x", vcpu=4, memory="1Gi", instanceType="t3.small")],
        {"x": (None, None)},
    ),
    (
        "a host's tier 0 makes a cloud host rank with local ones (packing: the fuller one, the cloud's 2 x 2Gi)",
        [local("zlocal", memory="8Gi"), cloud("aws", {"t3.small": 2}, tier=0)],
        [vm("x")],
        {"x": ("aws", "t3.small")},
    ),
    (
        "a local host of tier 2 ranks after a cloud host of tier 1",
        [local("spare", tier=2), cloud("aws", {"t3.small": 1})],
        [vm("x"), vm("y")],
        {"x": ("aws", "t3.small"), "y": ("spare", None)},
    ),
    (
        "a VM already on the cloud host stays there (sticky) and takes its slot before new VMs",
        [local("zlocal"), cloud("aws", {"t3.small": 1})],
        [vm("old", current="aws"), vm("new", burst="first")],
        {"old": ("aws", "t3.small"), "new": ("zlocal", None)},
    ),
    (
        "requirements on labels keep VMs on-premises",
        [local("zlocal", memory="1Gi", labels={"site": "dc1"}), cloud("aws", {"t3.small": 1}, labels={"site": "aws"})],
        [vm("x", memory="2Gi", requirements="labels.site == 'dc1'")],
        {"x": (None, None)},
    ),
]


@pytest.mark.parametrize(("title", "hosts", "requests", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bursting(title: str, hosts: list[HostCandidate], requests: list[PlacementRequest], expected: Any) -> None:
    assert decide(requests, hosts) == expected


def test_a_burst_says_why_and_an_unplaced_vm_says_what_the_cloud_lacked() -> None:
    decisions = {
        d.vm: d
        for d in place(
            [vm("x", memory="6Gi"), vm("y", memory="6Gi"), vm("z", memory="6Gi")],
            [local("zlocal"), cloud("aws", {"t3.large": 1})],
        )
    }
    assert decisions["x"].host == "zlocal" and decisions["x"].reason == ""
    assert decisions["y"].host == "aws"
    assert decisions["y"].reason == "bursting: no host of a lower tier than 1 has room or meets the requirements"
    assert decisions["z"].host is None
    assert decisions["z"].reasons["aws"] == "no instance type of the capacity map left with 1 vCPU, 6Gi memory"
    assert decisions["z"].reasons["zlocal"] == "needs 6Gi memory, 2Gi free"


def test_burst_first_says_so() -> None:
    [decision] = place([vm("x", burst="first")], [local("zlocal"), cloud("aws", {"t3.small": 1})])
    assert decision.reason == "placement.burst is first: cloud hosts are tried before local ones"
