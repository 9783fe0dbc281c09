"""``nebctl hosts`` and ``top`` figures from crafted records and samples, against values worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nebctl.controller.metrics import host_tops, host_views, vm_views
from nebctl.core.keys import Kind
from nebctl.database.records import HostSampleRecord, ResourceRecord, VMSampleRecord

GIB = 1 << 30
T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


def host(name: str, **spec: object) -> ResourceRecord:
    return ResourceRecord(Kind.HOST, "default", name, "fleet", applied={"uri": f"sim://{name}", **spec})


def vm(name: str, on: str, vcpu: int, memory: int, labels: dict[str, str] | None = None) -> ResourceRecord:
    applied: dict[str, object] = {"vcpu": vcpu, "memory": memory, "state": "running"}
    if labels:
        applied["metadata"] = {"labels": labels}
    return ResourceRecord(Kind.VIRTUAL_MACHINE, "default", name, "shop", applied=applied, host=on, status="running")


def probe(name: str, state: str = "online", **figures: object) -> HostSampleRecord:
    values: dict[str, object] = {
        "cpu_total": 16,
        "cpu_load": 0.25,
        "memory_total": 64 * GIB,
        "memory_used": 10 * GIB,
        "disk_total": 1000 * GIB,
        "disk_used": 100 * GIB,
    }
    values.update(figures)
    return HostSampleRecord(host=name, time=T0, state=state, attributes={"rack": "r1"}, **values)  # type: ignore[arg-type]


def sample(
    name: str, seconds: int, *, on: str = "kvm1", rx: int = 0, read: int = 0, cpu: float = 50.0
) -> VMSampleRecord:
    return VMSampleRecord(
        namespace="default",
        name=name,
        host=on,
        time=T0 + timedelta(seconds=seconds),
        state="running",
        cpu=cpu,
        memory_used=GIB,
        disk_read_bytes=read,
        net_rx_bytes=rx,
    )


def test_capacity_allocation_and_free() -> None:
    records = [
        host("kvm1", reserved={"cpu": 2, "memory": 4 * GIB}, overcommit={"cpu": 4.0, "memory": 1.5}),
        host("kvm2", enabled=False),
        vm("a", "kvm1", 4, 8 * GIB),
        vm("b", "kvm1", 2, 2 * GIB),
    ]
    views = {v.name: v for v in host_views(records, {"kvm1": probe("kvm1"), "kvm2": probe("kvm2")})}
    kvm1 = views["kvm1"]
    assert kvm1.state == "up" and kvm1.vms == 2 and kvm1.attributes == {"rack": "r1"}
    # CPU: (16 - 2) * 4 = 56 schedulable, 6 allocated, 50 free.
    assert (kvm1.cpu.schedulable, kvm1.cpu.allocated, kvm1.cpu.free) == (56, 6, 50)
    # Memory: (64 - 4) GiB * 1.5 = 90 GiB schedulable, 10 GiB allocated, 80 GiB free.
    assert (kvm1.memory.schedulable, kvm1.memory.allocated, kvm1.memory.free) == (90 * GIB, 10 * GIB, 80 * GIB)
    assert views["kvm2"].state == "disabled"


def test_host_states() -> None:
    records = [host("kvm1"), host("kvm2"), host("kvm3")]
    samples = {"kvm3": probe("kvm3", state="disabled")}
    samples["kvm1"] = HostSampleRecord(
        host="kvm1",
        time=T0,
        state="error",
        cpu_total=0,
        cpu_load=0,
        memory_total=0,
        memory_used=0,
        disk_total=0,
        disk_used=0,
        attributes={"error": "no route"},
    )
    views = {v.name: v for v in host_views(records, samples)}
    assert (views["kvm1"].state, views["kvm1"].error, views["kvm1"].cpu_load) == ("error", "no route", None)
    assert views["kvm1"].attributes == {}
    assert views["kvm2"].state == "unknown" and views["kvm2"].last_probe is None
    assert views["kvm3"].state == "disabled"


def test_rates_from_the_two_newest_samples() -> None:
    records = [
        vm("a", "kvm1", 2, 4 * GIB, {"team": "blue"}),
        vm("b", "kvm1", 1, GIB),
        vm("c", "kvm2", 1, GIB),
        vm("d", "kvm1", 1, GIB),
        vm("e", "kvm1", 1, GIB),
    ]
    samples = [
        sample("a", 0, rx=1000, read=0),
        sample("a", 10, rx=3000, read=500),
        sample("a", 30, rx=7000, read=1500),  # the two newest: 20 s apart, rx +4000, read +1000
        sample("b", 0, rx=9000),
        sample("b", 10, rx=100),  # counter went down: restarted, no rate
        sample("c", 0, on="kvm1", rx=0),
        sample("c", 10, on="kvm2", rx=50),  # moved between the samples: no rate
        sample("d", 5, rx=10),  # one sample: no rate
    ]
    views = {v.name: v for v in vm_views(records, samples)}
    a = views["a"]
    assert (a.net_rx_rate, a.disk_read_rate, a.sampled_at) == (200.0, 50.0, T0 + timedelta(seconds=30))
    assert a.labels == {"team": "blue"} and (a.vcpu, a.memory) == (2, 4 * GIB)
    assert views["b"].net_rx_rate is None and views["b"].cpu == 50.0
    assert views["c"].net_rx_rate is None and views["c"].host == "kvm2"
    assert views["d"].net_rx_rate is None and views["d"].cpu == 50.0
    assert views["e"].cpu is None and views["e"].state == "running"  # never sampled: the record's status
    tops = {t.name: t for t in host_tops(host_views([host("kvm1")], {"kvm1": probe("kvm1")}), list(views.values()))}
    # kvm1 holds a, b, d, e: CPU 50 + 50 + 50 (e has no sample), rx rate 200 (the others have none).
    assert tops["kvm1"].vms == 4 and tops["kvm1"].vm_cpu == pytest.approx(150.0)
    assert tops["kvm1"].net_rx_rate == pytest.approx(200.0)
