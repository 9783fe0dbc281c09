"""Property tests of the scheduler against a naive reference that follows the documented rules literally.

The reference re-examines every host for every VM (O(VMs x hosts)); the real scheduler uses heaps, buckets
and caches. Agreement on random fleets and requests is what shows the optimisations change nothing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from nebctl.controller.placement import HostCandidate, PlacementRequest, place
from nebctl.schemas import expressions
from nebctl.schemas.models import Placement

GI = 1024**3
BUILTINS = {
    "name",
    "cpus",
    "memory",
    "load",
    "labels",
    "custom",
    "free_cpu",
    "free_memory",
    "allocated_cpu",
    "allocated_memory",
    "disk_free",
}


def reference(requests: Sequence[PlacementRequest], hosts: Sequence[HostCandidate]) -> dict[str, str | None]:
    ordered = sorted(hosts, key=lambda h: h.name)
    names = [h.name for h in ordered]
    placed_cpu = dict.fromkeys(names, 0)
    placed_memory = dict.fromkeys(names, 0)
    placed_disk = dict.fromkeys(names, 0)
    by_name = {h.name: h for h in ordered}

    def free_cpu(h: HostCandidate) -> float:
        return (h.cpus - h.reserved_cpu) * h.overcommit_cpu - h.allocated_cpu - placed_cpu[h.name]

    def free_memory(h: HostCandidate) -> int:
        total = math.floor((h.memory - h.reserved_memory) * h.overcommit_memory)
        return total - h.allocated_memory - placed_memory[h.name]

    def free_disk(h: HostCandidate) -> int | None:
        return None if h.disk_free is None else h.disk_free - placed_disk[h.name]

    def fits(h: HostCandidate, r: PlacementRequest, disk: int) -> bool:
        d = free_disk(h)
        return r.vcpu <= free_cpu(h) + 1e-9 and r.memory <= free_memory(h) and (d is None or disk <= d)

    def attributes(h: HostCandidate) -> dict[str, object]:
        result: dict[str, object] = {k: v for k, v in h.custom.items() if k not in BUILTINS}
        result.update(
            name=h.name,
            cpus=h.cpus,
            memory=h.memory,
            load=h.load,
            labels=h.labels,
            custom=h.custom,
            free_cpu=free_cpu(h),
            free_memory=free_memory(h),
            allocated_cpu=h.allocated_cpu + placed_cpu[h.name],
            allocated_memory=h.allocated_memory + placed_memory[h.name],
        )
        if h.disk_free is not None:
            result["disk_free"] = free_disk(h)
        return result

    def holds(text: str | None, h: HostCandidate) -> bool:
        if text is None:
            return True
        try:
            return expressions.parse(text).evaluate(attributes(h)) is True
        except expressions.ExpressionError:
            return False

    def rank(text: str, h: HostCandidate) -> float | None:
        try:
            value = expressions.to_number(expressions.parse(text).evaluate(attributes(h)))
        except expressions.ExpressionError:
            return None
        return None if value is None or math.isnan(value) else float(value)

    def allocate(h: HostCandidate, r: PlacementRequest, disk: int) -> None:
        placed_cpu[h.name] += r.vcpu
        placed_memory[h.name] += r.memory
        placed_disk[h.name] += disk

    result: dict[str, str | None] = {}
    for r in sorted(requests, key=lambda r: r.vm):
        h = by_name.get(r.current_host or "")
        if h is None:
            continue
        fixed = r.placement.host
        dynamic = r.placement.requirements is not None and any(
            name.split(".")[0] in {"free_cpu", "free_memory", "allocated_cpu", "allocated_memory", "disk_free"}
            for name in expressions.parse(r.placement.requirements).names
        )
        allowed = fixed == h.name if fixed else (dynamic or holds(r.placement.requirements, h))
        if allowed and (not h.online or fits(h, r, 0)):  # an offline host keeps its VMs, whatever it reports
            allocate(h, r, 0)
            result[r.vm] = h.name
    for r in sorted(requests, key=lambda r: r.vm):
        if r.vm in result or r.placement.host is None:
            continue
        h = by_name.get(r.placement.host)
        disk = 0 if r.current_host == r.placement.host else r.disk
        if h is not None and h.enabled and fits(h, r, disk):
            allocate(h, r, disk)
            result[r.vm] = h.name
        else:
            result[r.vm] = None
    for r in sorted(requests, key=lambda r: (-r.memory, -r.vcpu, -r.disk, r.vm)):
        if r.vm in result:
            continue
        best: tuple[tuple[float, float], int] | None = None
        for index, h in enumerate(ordered):
            if not (h.enabled and h.online and fits(h, r, r.disk) and holds(r.placement.requirements, h)):
                continue
            if r.placement.rank is not None:
                value = rank(r.placement.rank, h)
                if value is None:
                    continue
                key: tuple[float, float] = (-value, 0.0)
            elif r.placement.policy == "striping":
                key = (-free_memory(h), -free_cpu(h))
            elif r.placement.policy == "load":
                key = (h.load + (placed_cpu[h.name] / h.cpus if h.cpus > 0 else 0.0), 0.0)
            else:
                key = (free_memory(h), free_cpu(h))
            if best is None or (key, index) < best:
                best = (key, index)
        if best is None:
            result[r.vm] = None
        else:
            allocate(ordered[best[1]], r, r.disk)
            result[r.vm] = ordered[best[1]].name
    return result


HOST_NAMES = [f"h{i}" for i in range(8)]
RULES = [
    Placement(),
    Placement(policy="striping"),
    Placement(policy="load"),
    Placement(requirements="labels.zone == 'a'"),
    Placement(requirements="custom.gpu >= 1", policy="striping"),
    Placement(requirements="free_memory >= 6Gi"),
    Placement(requirements="free_cpu < 6"),  # not monotonic: hosts become eligible as they fill
    Placement(rank="free_cpu"),
    Placement(rank="custom.gpu"),
    Placement(rank="-load", requirements="'gpu' in custom"),
    Placement(host="h0"),
    Placement(host="h3"),
]


@st.composite
def fleets(draw: st.DrawFn) -> list[HostCandidate]:
    names = draw(st.lists(st.sampled_from(HOST_NAMES), unique=True, max_size=6))
    hosts = []
    for name in names:
        custom = draw(st.sampled_from([{}, {"gpu": "0"}, {"gpu": "2"}, {"gpu": "x"}]))
        hosts.append(
            HostCandidate(
                name,
                enabled=draw(st.booleans() | st.just(True)),
                online=draw(st.booleans() | st.just(True)),
                cpus=draw(st.sampled_from([2, 4, 8])),
                memory=draw(st.sampled_from([4, 8, 16])) * GI,
                reserved_cpu=draw(st.sampled_from([0, 0.5, 1])),
                reserved_memory=draw(st.sampled_from([0, 1])) * GI,
                overcommit_cpu=draw(st.sampled_from([1.0, 1.5, 4.0])),
                overcommit_memory=draw(st.sampled_from([1.0, 1.25])),
                allocated_cpu=draw(st.sampled_from([0, 1, 2.5])),
                allocated_memory=draw(st.sampled_from([0, 1, 3])) * GI,
                disk_free=draw(st.sampled_from([None, 0, 20 * GI, 100 * GI])),
                load=draw(st.sampled_from([0.0, 0.2, 0.5, 0.9])),
                labels=draw(st.sampled_from([{}, {"zone": "a"}, {"zone": "b"}])),
                custom=custom,
            )
        )
    return hosts


@st.composite
def workloads(draw: st.DrawFn) -> list[PlacementRequest]:
    count = draw(st.integers(min_value=0, max_value=25))
    return [
        PlacementRequest(
            f"vm{i}",
            draw(st.sampled_from([1, 2, 4])),
            draw(st.sampled_from([1, 2, 3])) * GI,
            draw(st.sampled_from([0, 10 * GI])),
            draw(st.sampled_from(RULES)),
            current_host=draw(st.sampled_from([None, None, *HOST_NAMES[:4]])),
        )
        for i in range(count)
    ]


@settings(max_examples=150, deadline=None)
@given(fleets(), workloads())
def test_the_scheduler_agrees_with_the_naive_reference(
    hosts: list[HostCandidate], requests: list[PlacementRequest]
) -> None:
    decisions = place(requests, hosts)
    assert {d.vm: d.host for d in decisions} == reference(requests, hosts)


@settings(max_examples=100, deadline=None)
@given(fleets(), workloads())
def test_no_host_is_over_allocated(hosts: list[HostCandidate], requests: list[PlacementRequest]) -> None:
    decisions = place(requests, hosts)
    by_name = {h.name: h for h in hosts}
    for h in hosts:
        mine = [r for r, d in zip(requests, decisions, strict=True) if d.host == h.name]
        cpu = (h.cpus - h.reserved_cpu) * h.overcommit_cpu - h.allocated_cpu
        memory = math.floor((h.memory - h.reserved_memory) * h.overcommit_memory) - h.allocated_memory
        if not mine:
            continue  # a host over-allocated before the plan stays so, but gets nothing more
        if not h.online:
            continue  # an offline host reports no usable capacity: its VMs stay on it, unknown
        assert sum(r.vcpu for r in mine) <= cpu + 1e-9
        assert sum(r.memory for r in mine) <= memory
        if h.disk_free is not None:
            assert sum(r.disk for r in mine if r.current_host != h.name) <= h.disk_free
    for r, d in zip(requests, decisions, strict=True):
        if d.host is not None:
            assert not d.reasons
        elif hosts or r.placement.host:
            assert d.reasons
            assert set(d.reasons) <= set(by_name) | {r.placement.host}


@settings(max_examples=80, deadline=None)
@given(fleets(), workloads(), st.randoms(use_true_random=False))
def test_same_input_same_output_whatever_the_order(
    hosts: list[HostCandidate], requests: list[PlacementRequest], shuffler: random.Random
) -> None:
    first = place(requests, hosts)
    assert place(requests, hosts) == first
    shuffled_hosts = list(hosts)
    shuffler.shuffle(shuffled_hosts)
    shuffled_requests = list(requests)
    shuffler.shuffle(shuffled_requests)
    again = {d.vm: d for d in place(shuffled_requests, shuffled_hosts)}
    assert {d.vm: d for d in first} == again


@settings(max_examples=60, deadline=None)
@given(fleets(), workloads())
def test_a_second_plan_from_the_first_plans_result_moves_nothing(
    hosts: list[HostCandidate], requests: list[PlacementRequest]
) -> None:
    first = place(requests, hosts)
    replanned = [
        PlacementRequest(r.vm, r.vcpu, r.memory, r.disk, r.placement, current_host=d.host)
        for r, d in zip(requests, first, strict=True)
    ]
    # Whatever was placed stays; a VM that fitted nowhere may find room now (dynamic requirements).
    second = place(replanned, hosts)
    assert [d.host for d in first if d.host] == [s.host for d, s in zip(first, second, strict=True) if d.host]
