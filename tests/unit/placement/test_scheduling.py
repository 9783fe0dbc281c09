"""Scheduler decision tables: policies, capacity arithmetic, requirements, rank, stickiness and reasons."""

from __future__ import annotations

from typing import Any

import pytest

from nebctl.controller.placement import HostCandidate, PlacementDecision, PlacementRequest, place
from nebctl.core.quantities import parse_quantity
from nebctl.schemas.models import Placement

GI = 1024**3


def host(name: str, **fields: Any) -> HostCandidate:
    fields.setdefault("cpus", 8)
    fields.setdefault("memory", "16Gi")
    for key in ("memory", "reserved_memory", "allocated_memory", "disk_free"):
        if isinstance(fields.get(key), str):
            fields[key] = parse_quantity(fields[key])
    return HostCandidate(name, **fields)


def vm(
    name: str, vcpu: int = 1, memory: str = "1Gi", disk: str = "0", current: str | None = None, **placement: Any
) -> PlacementRequest:
    return PlacementRequest(
        name, vcpu, parse_quantity(memory), parse_quantity(disk), Placement(**placement), current_host=current
    )


def where(requests: list[PlacementRequest], hosts: list[HostCandidate]) -> dict[str, str | None]:
    return {decision.vm: decision.host for decision in place(requests, hosts)}


TWO_HOSTS = [host("a", memory="16Gi"), host("b", memory="32Gi")]

CASES = [
    # -- policies --
    ("packing is the default: fullest first", TWO_HOSTS, [vm("x")], {"x": "a"}),
    (
        "packing fills one host before the next",
        TWO_HOSTS,
        [vm(f"v{i}", memory="6Gi") for i in range(3)],
        {"v0": "a", "v1": "a", "v2": "b"},
    ),
    ("striping: emptiest first", TWO_HOSTS, [vm("x", policy="striping")], {"x": "b"}),
    (
        "striping spreads as it goes",
        [host("a"), host("b")],
        [vm(f"v{i}", policy="striping") for i in range(4)],
        {"v0": "a", "v1": "b", "v2": "a", "v3": "b"},
    ),
    ("load: lowest measured load", [host("a", load=0.7), host("b", load=0.2)], [vm("x", policy="load")], {"x": "b"}),
    (
        "load counts this plan's vCPUs",
        [host("a", load=0.3), host("b", load=0.2)],
        [vm("v1", vcpu=2, policy="load"), vm("v2", vcpu=2, policy="load")],
        {"v1": "b", "v2": "a"},
    ),
    ("packing ties go to the first name", [host("b"), host("a")], [vm("x")], {"x": "a"}),
    ("striping ties go to the first name", [host("b"), host("a")], [vm("x", policy="striping")], {"x": "a"}),
    ("packing: less free CPU breaks a memory tie", [host("a", cpus=8), host("b", cpus=4)], [vm("x")], {"x": "b"}),
    # -- rank --
    (
        "rank: highest value wins",
        [host("a", custom={"score": "3"}), host("b", custom={"score": "9"})],
        [vm("x", rank="custom.score")],
        {"x": "b"},
    ),
    (
        "rank: negative rank prefers the lowest",
        [host("a", load=0.1), host("b", load=0.5)],
        [vm("x", rank="-load")],
        {"x": "a"},
    ),
    (
        "rank on free capacity is re-read as the plan goes",
        [host("a"), host("b", memory="20Gi")],
        [vm(f"v{i}", memory="4Gi", rank="free_memory") for i in range(3)],
        {"v0": "b", "v1": "a", "v2": "b"},
    ),
    ("rank ties go to the first name", [host("b"), host("a")], [vm("x", rank="1")], {"x": "a"}),
    # -- capacity: reservations, overcommit, allocation --
    (
        "reserved memory is kept back",
        [host("a", reserved_memory="12Gi"), host("b", memory="8Gi")],
        [vm("x", memory="6Gi")],
        {"x": "b"},
    ),
    (
        "reserved cpu is kept back",
        [host("a", cpus=4, reserved_cpu=2), host("b", cpus=8)],
        [vm("x", vcpu=3)],
        {"x": "b"},
    ),
    ("cpu overcommit makes room", [host("a", cpus=4, overcommit_cpu=2.0)], [vm("x", vcpu=8)], {"x": "a"}),
    (
        "cpu overcommit is applied after the reservation",
        [host("a", cpus=4, reserved_cpu=1, overcommit_cpu=2.0)],
        [vm("x", vcpu=7)],
        {"x": None},
    ),
    (
        "memory overcommit makes room",
        [host("a", memory="8Gi", overcommit_memory=1.5)],
        [vm("x", memory="12Gi")],
        {"x": "a"},
    ),
    (
        "fractional cpu arithmetic still fits exactly",
        [host("a", cpus=4, reserved_cpu=0.4, overcommit_cpu=1.1)],
        [vm("x", vcpu=3), vm("y", vcpu=1)],
        {"x": "a", "y": None},
    ),
    (
        "existing allocations count",
        [host("a", allocated_memory="15Gi"), host("b", allocated_cpu=7.5)],
        [vm("x", vcpu=1, memory="2Gi")],
        {"x": None},
    ),
    (
        "the plan's own allocations count",
        [host("a", memory="4Gi")],
        [vm("x", memory="3Gi"), vm("y", memory="2Gi")],
        {"x": "a", "y": None},
    ),
    (
        "larger VMs are placed first",
        [host("a", memory="4Gi")],
        [vm("small", memory="2Gi"), vm("big", memory="3Gi")],
        {"small": None, "big": "a"},
    ),
    (
        "disk is checked when known",
        [host("a", disk_free="10Gi"), host("b", disk_free="100Gi")],
        [vm("x", disk="20Gi")],
        {"x": "b"},
    ),
    ("disk is not checked when unknown", [host("a")], [vm("x", disk="1Ti")], {"x": "a"}),
    # -- hosts out of service --
    ("disabled hosts get no new VMs", [host("a", enabled=False), host("b")], [vm("x")], {"x": "b"}),
    ("offline hosts get no new VMs", [host("a", online=False), host("b")], [vm("x")], {"x": "b"}),
    ("no host at all", [], [vm("x")], {"x": None}),
    # -- requirements --
    (
        "requirements on labels",
        [host("a", labels={"zone": "a"}), host("b", labels={"zone": "b"})],
        [vm("x", requirements="labels.zone == 'b'")],
        {"x": "b"},
    ),
    (
        "requirements on custom keys as numbers",
        [host("a", custom={"gpu": "0"}), host("b", custom={"gpu": "2"})],
        [vm("x", requirements="custom.gpu >= 1")],
        {"x": "b"},
    ),
    (
        "custom keys at the top level",
        [host("a", custom={"gpu": "0"}), host("b", custom={"gpu": "2"})],
        [vm("x", requirements="gpu >= 1")],
        {"x": "b"},
    ),
    (
        "a custom key never hides a built-in name",
        [host("a", custom={"memory": "1"})],
        [vm("x", requirements="memory == 16Gi and custom.memory == 1")],
        {"x": "a"},
    ),
    (
        "a host without the label is not a match",
        [host("a"), host("b", labels={"zone": "a"})],
        [vm("x", requirements="labels.zone == 'a'")],
        {"x": "b"},
    ),
    (
        "requirements on free capacity see the plan's allocations",
        [host("a", memory="8Gi"), host("b", memory="8Gi")],
        [vm(f"v{i}", memory="2Gi", requirements="free_memory > 6Gi") for i in range(3)],
        {"v0": "a", "v1": "b", "v2": None},
    ),
    (
        "requirements on allocated_memory",
        [host("a", allocated_memory="1Gi"), host("b")],
        [vm("x", requirements="allocated_memory == 0")],
        {"x": "b"},
    ),
    (
        "requirements with a key test",
        [host("a"), host("b", custom={"fpga": "yes"})],
        [vm("x", requirements="'fpga' in custom")],
        {"x": "b"},
    ),
    ("requirements on the host name", [host("a"), host("b")], [vm("x", requirements="name in ['b', 'c']")], {"x": "b"}),
    # -- fixed host --
    ("a fixed host is used", TWO_HOSTS, [vm("x", host="b")], {"x": "b"}),
    (
        "a fixed host goes first and takes the room",
        [host("a", memory="4Gi")],
        [vm("big", memory="3Gi"), vm("pinned", memory="2Gi", host="a")],
        {"pinned": "a", "big": None},
    ),
    ("a fixed host ignores online state", [host("a", online=False)], [vm("x", host="a")], {"x": "a"}),
    ("a fixed host must be enabled", [host("a", enabled=False)], [vm("x", host="a")], {"x": None}),
    ("a fixed host must exist", [host("a")], [vm("x", host="zz")], {"x": None}),
    ("a fixed host must have room", [host("a", memory="1Gi")], [vm("x", memory="2Gi", host="a")], {"x": None}),
    # -- sticky placement --
    ("a VM stays on its host", TWO_HOSTS, [vm("x", current="b")], {"x": "b"}),
    (
        "staying VMs go before new ones",
        [host("a", memory="4Gi"), host("b", memory="4Gi")],
        [vm("new", memory="3Gi", host="a"), vm("old", memory="3Gi", current="a")],
        {"old": "a", "new": None},
    ),
    (
        "a VM stays on a disabled host (drain is for new VMs)",
        [host("a", enabled=False), host("b")],
        [vm("x", current="a")],
        {"x": "a"},
    ),
    (
        "a VM stays on an offline host that reports no capacity (it is waited for, not evacuated)",
        [host("a", online=False, cpus=0, memory="0"), host("b")],
        [vm("x", current="a", requirements="name == 'a'"), vm("y", current="a")],
        {"x": "a", "y": "a"},
    ),
    (
        "a VM whose requirements no longer hold moves",
        [host("a", labels={"zone": "a"}), host("b", labels={"zone": "b"})],
        [vm("x", current="a", requirements="labels.zone == 'b'")],
        {"x": "b"},
    ),
    (
        "a VM that outgrew its host moves",
        [host("a", memory="2Gi"), host("b")],
        [vm("x", memory="4Gi", current="a")],
        {"x": "b"},
    ),
    ("a VM on a vanished host is placed anew", TWO_HOSTS, [vm("x", current="gone")], {"x": "a"}),
    (
        "a staying VM is not charged its disk again",
        [host("a", disk_free="1Gi")],
        [vm("x", disk="10Gi", current="a")],
        {"x": "a"},
    ),
    ("a fixed VM already on its host stays", [host("a", enabled=False)], [vm("x", host="a", current="a")], {"x": "a"}),
    ("a fixed VM elsewhere moves to its host", TWO_HOSTS, [vm("x", host="a", current="b")], {"x": "a"}),
]


@pytest.mark.parametrize(
    ("hosts", "requests", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_placement_decisions(
    hosts: list[HostCandidate], requests: list[PlacementRequest], expected: dict[str, str | None]
) -> None:
    assert where(requests, hosts) == expected


REASONS = [
    ("disabled", [host("a", enabled=False)], vm("x"), {"a": "disabled"}),
    ("offline", [host("a", online=False)], vm("x"), {"a": "offline"}),
    ("memory", [host("a", memory="2Gi")], vm("x", memory="4Gi"), {"a": "needs 4Gi memory, 2Gi free"}),
    ("cpu", [host("a", cpus=2)], vm("x", vcpu=4), {"a": "needs 4 vCPU, 2 free"}),
    (
        "cpu and memory",
        [host("a", cpus=2, memory="2Gi")],
        vm("x", vcpu=4, memory="4Gi"),
        {"a": "needs 4 vCPU, 2 free; needs 4Gi memory, 2Gi free"},
    ),
    ("disk", [host("a", disk_free="10Gi")], vm("x", disk="20Gi"), {"a": "needs 20Gi disk, 10Gi free"}),
    ("overallocated", [host("a", memory="2Gi", allocated_memory="3Gi")], vm("x"), {"a": "needs 1Gi memory, -1Gi free"}),
    (
        "requirements",
        [host("a", labels={"zone": "b"})],
        vm("x", requirements="labels.zone == 'a'"),
        {"a": "requirements not met: labels.zone == 'a'"},
    ),
    (
        "missing label",
        [host("a", labels={"zone": "b"})],
        vm("x", requirements="labels.zon == 'a'"),
        {"a": "requirements: unknown name 'labels.zon' at 0; did you mean 'labels.zone'?"},
    ),
    ("not a boolean", [host("a")], vm("x", requirements="cpus"), {"a": "requirements gave 8, not true or false"}),
    (
        "dynamic requirements",
        [host("a")],
        vm("x", requirements="free_memory > 100Gi"),
        {"a": "requirements not met: free_memory > 100Gi"},
    ),
    (
        "rank error",
        [host("a")],
        vm("x", rank="custom.score"),
        {"a": "rank: unknown name 'custom.score' at 0; did you mean 'custom'?"},
    ),
    ("rank not a number", [host("a")], vm("x", rank="name"), {"a": "rank gave 'a', not a number"}),
    ("fixed host missing", [host("a")], vm("x", host="b"), {"b": "no such host"}),
    ("fixed host disabled", [host("a", enabled=False)], vm("x", host="a"), {"a": "disabled"}),
    (
        "fixed host full",
        [host("a", memory="1Gi")],
        vm("x", memory="2Gi", host="a"),
        {"a": "needs 2Gi memory, 1Gi free"},
    ),
    (
        "every host has its reason, in name order",
        [host("c", memory="1Gi"), host("a", enabled=False), host("b", online=False)],
        vm("x", memory="2Gi"),
        {"a": "disabled", "b": "offline", "c": "needs 2Gi memory, 1Gi free"},
    ),
]


@pytest.mark.parametrize(("hosts", "request_", "reasons"), [r[1:] for r in REASONS], ids=[r[0] for r in REASONS])
def test_reasons_when_a_vm_fits_nowhere(
    hosts: list[HostCandidate], request_: PlacementRequest, reasons: dict[str, str]
) -> None:
    [decision] = place([request_], hosts)
    assert decision == PlacementDecision("x", None, reasons)
    assert list(decision.reasons) == list(reasons)


def test_reasons_follow_the_plan_allocations() -> None:
    hosts = [host("a", memory="4Gi"), host("b", memory="4Gi")]
    decisions = place([vm("v1", memory="3Gi"), vm("v2", memory="3Gi"), vm("v3", memory="3Gi")], hosts)
    assert [d.host for d in decisions] == ["a", "b", None]
    assert decisions[2].reasons == {"a": "needs 3Gi memory, 1Gi free", "b": "needs 3Gi memory, 1Gi free"}


def test_reasons_update_for_a_failing_bucket_when_another_bucket_allocates() -> None:
    hosts = [host("a", memory="4Gi")]
    requests = [vm("big1", memory="4Gi"), vm("big2", memory="4Gi"), vm("small", memory="1Gi", policy="striping")]
    decisions = {d.vm: d for d in place(requests, hosts)}
    assert decisions["big1"].host == "a"
    assert decisions["big2"].reasons == {"a": "needs 4Gi memory, 0 free"}
    assert decisions["small"].reasons == {"a": "needs 1Gi memory, 0 free"}


def test_decisions_come_back_in_request_order() -> None:
    requests = [vm("c"), vm("a", memory="2Gi"), vm("b", host="h")]
    assert [d.vm for d in place(requests, [host("h")])] == ["c", "a", "b"]


def test_duplicate_host_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate host names: a"):
        place([vm("x")], [host("a"), host("a")])


def test_a_waiting_host_comes_back_when_dynamic_requirements_hold_again() -> None:
    # 'free_memory < 6Gi' is false on an empty 8Gi host, and becomes true once a VM is placed there.
    hosts = [host("a", memory="8Gi")]
    requests = [vm("first", memory="3Gi", host="a"), vm("second", memory="1Gi", requirements="free_memory < 6Gi")]
    assert where(requests, hosts) == {"first": "a", "second": "a"}
    requests = [vm("big", memory="3Gi"), vm("small", memory="1Gi", requirements="free_memory < 6Gi")]
    assert where(requests, hosts) == {"big": "a", "small": "a"}
