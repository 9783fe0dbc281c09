"""Placement failures as the plan reports them: hosts grouped by reason, with counts and example hosts, on 1, 10
and 500 hosts; many VMs failing the same way said once; the long form naming every host.

The reasons come from the real scheduler (``place``); every expected line is written out by hand from the fleet
each test builds.
"""

from __future__ import annotations

from typing import Any

from nebctl.controller.placement import HostCandidate, PlacementRequest, place
from nebctl.controller.unplaced import Unplaced, brief, every_host, group_reasons
from nebctl.schemas.models import Placement

GI = 1024**3


def host(name: str, **fields: Any) -> HostCandidate:
    fields.setdefault("cpus", 8)
    fields.setdefault("memory", 16 * GI)
    return HostCandidate(name, **fields)


def vm(name: str, vcpu: int, memory_gi: int, **placement: Any) -> PlacementRequest:
    return PlacementRequest(f"vm/{name}", vcpu, memory_gi * GI, 0, Placement(**placement))


def failures(requests: list[PlacementRequest], hosts: list[HostCandidate]) -> list[Unplaced]:
    return [Unplaced(d.vm, d.reasons) for d in place(requests, hosts) if d.host is None]


def test_one_host() -> None:
    [failed] = failures([vm("big", 8, 4)], [host("node-1", cpus=4)])
    assert brief([failed]) == ["vm/big: fits on no host: node-1 has 4 free vCPU, 8 needed"]
    assert every_host([failed]) == ["vm/big: fits on no host:", "  node-1: needs 8 vCPU, 4 free"]


def test_one_host_short_of_everything_it_has_none_of() -> None:
    full = host("node-1", cpus=4, allocated_cpu=4, memory=8 * GI, allocated_memory=8 * GI)
    [failed] = failures([vm("big", 2, 2)], [full])
    assert brief([failed]) == ["vm/big: fits on no host: node-1 has no free vCPU and no free memory"]


def _ten_hosts() -> list[HostCandidate]:
    zone_b = {"zone": "b"}
    return [
        # node-01..06: every vCPU taken.
        *(host(f"node-{i:02d}", labels=zone_b, allocated_cpu=8) for i in range(1, 7)),
        # node-07, 08: the wrong zone.
        host("node-07", labels={"zone": "a"}),
        host("node-08", labels={"zone": "a"}),
        # node-09: drained.
        host("node-09", labels=zone_b, enabled=False),
        # node-10: 2Gi of memory left.
        host("node-10", labels=zone_b, allocated_memory=14 * GI),
    ]


def test_ten_hosts_grouped_by_reason() -> None:
    [failed] = failures([vm("app-7", 2, 4, requirements="labels.zone == 'b'")], _ten_hosts())
    assert brief([failed]) == [
        "vm/app-7: fits on no host: 6 hosts have no free vCPU (node-01, node-02, …); "
        "2 hosts fail requirements labels.zone == 'b' (node-07, node-08); "
        "node-09 is disabled; "
        "node-10 has 2Gi free memory, 4Gi needed"
    ]
    groups = group_reasons(failed.reasons)
    assert [group.hosts for group in groups] == [
        ("node-01", "node-02", "node-03", "node-04", "node-05", "node-06"),
        ("node-07", "node-08"),
        ("node-09",),
        ("node-10",),
    ]


def test_ten_hosts_several_vms_failing_alike_are_said_once() -> None:
    rule = {"requirements": "labels.zone == 'b'"}
    requests = [vm("app-7", 2, 4, **rule), vm("app-8", 2, 4, **rule), vm("tiny", 1, 1, **rule)]
    failed = failures(requests, _ten_hosts())
    # tiny fits on node-10 (2Gi free); the two others fail on the same hosts for the same reasons.
    assert [f.vm for f in failed] == ["vm/app-7", "vm/app-8"]
    [line] = brief(failed)
    assert line.startswith(
        "2 VMs fit on no host (vm/app-7, vm/app-8): 6 hosts have no free vCPU (node-01, node-02, …); "
    )
    # The big VMs are placed (and fail) before tiny takes 1Gi of node-10: they saw its 2Gi.
    assert line.endswith("node-09 is disabled; node-10 has 2Gi free memory, 4Gi needed")


def test_a_host_failing_for_two_reasons_is_grouped_apart_from_hosts_failing_for_one() -> None:
    hosts = [
        host("a", allocated_cpu=8),
        host("b", allocated_cpu=8),
        host("c", allocated_cpu=8, allocated_memory=16 * GI),
    ]
    [failed] = failures([vm("x", 1, 1)], hosts)
    assert brief([failed]) == [
        "vm/x: fits on no host: 2 hosts have no free vCPU (a, b); c has no free vCPU and no free memory"
    ]


def _five_hundred_hosts() -> list[HostCandidate]:
    hosts = [host(f"node-{i:04d}", allocated_cpu=8) for i in range(1, 481)]  # 480 full
    # 15 with some vCPUs free, the most being 3 (node-0495).
    hosts += [host(f"node-{i:04d}", allocated_cpu=7 if i % 2 else 6) for i in range(481, 495)]
    hosts.append(host("node-0495", allocated_cpu=5))
    hosts += [host(f"node-{i:04d}", online=False) for i in range(496, 501)]  # 5 offline
    return hosts


def test_five_hundred_hosts_and_thirty_vms() -> None:
    requests = [vm(f"w-{i:02d}", 4, 1) for i in range(1, 31)]
    failed = failures(requests, _five_hundred_hosts())
    assert len(failed) == 30
    names = ", ".join(f"vm/w-{i:02d}" for i in range(1, 21))
    assert brief(failed) == [
        f"30 VMs fit on no host ({names} and 10 more (-v lists them all)): "
        "480 hosts have no free vCPU (node-0001, node-0002, …); "
        "15 hosts have at most 3 free vCPU, 4 needed (node-0481, node-0482, …); "
        "5 hosts are offline (node-0496, node-0497, …)"
    ]
    assert len(brief(failed)[0]) < 700  # a line, not a listing of 500 hosts
    # The long form: every VM, then each of the 500 hosts with its own reason.
    long = every_host(failed)
    assert len(long) == 30 * 501
    assert long[:2] == ["vm/w-01: fits on no host:", "  node-0001: needs 4 vCPU, 0 free"]
    assert long[482] == "  node-0482: needs 4 vCPU, 2 free"
    assert long[496] == "  node-0496: offline"


def test_no_hosts_at_all() -> None:
    [failed] = failures([vm("x", 1, 1)], [])
    assert brief([failed]) == ["vm/x: fits on no host: no hosts are declared"]
    assert every_host([failed]) == ["vm/x: fits on no host:", "  (no hosts are declared)"]


def test_unknown_reasons_are_kept_as_they_are() -> None:
    groups = group_reasons({"a": "rank gave 'abc', not a number", "b": "rank gave 'abc', not a number"})
    assert [group.text() for group in groups] == ["2 hosts refuse it: rank gave 'abc', not a number (a, b)"]
