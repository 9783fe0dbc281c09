"""What ``nebctl hosts`` and ``nebctl top`` show, computed from records and monitoring samples (pure).

Hosts: capacity as probed, ``reserved`` and ``overcommit`` from the Host spec, allocation as the sum of the
sizes of the VMs recorded on the host (running or not: a stopped VM keeps its share, as in placement), and

    schedulable = (capacity - reserved) * overcommit        free = schedulable - allocated

for CPU and memory, exactly as the scheduler counts them (``controller.placement``). Usage is what the newest
probe measured.

VMs: the newest sample gives CPU and memory use; disk and network rates are the growth of the cumulative
counters between a VM's two newest raw samples on the same host, divided by the time between them (no rate
when there is one sample, or when a counter went down: the VM restarted and its counters began again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from nebctl.core.keys import Kind
from nebctl.database.records import HostSampleRecord, ResourceRecord, VMSampleRecord

# How ``nebctl hosts`` names a host's state.
UP, ERROR, DISABLED, UNKNOWN = "up", "error", "disabled", "unknown"


@dataclass(frozen=True)
class Capacity:
    total: float
    reserved: float
    overcommit: float
    allocated: float

    @property
    def schedulable(self) -> float:
        return (self.total - self.reserved) * self.overcommit

    @property
    def free(self) -> float:
        return self.schedulable - self.allocated


@dataclass(frozen=True)
class HostView:
    name: str
    state: str
    last_probe: datetime | None
    error: str | None
    cpu: Capacity
    memory: Capacity
    cpu_load: float | None  # share of the CPUs in use, 0..1
    memory_used: int | None
    disk_total: int | None
    disk_used: int | None
    vms: int
    labels: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)


def _labels(record: ResourceRecord) -> dict[str, str]:
    applied = record.applied or {}
    metadata = applied.get("metadata") or {}
    return {**(metadata.get("labels") or {}), **(applied.get("labels") or {})}


def host_labels(records: Sequence[ResourceRecord]) -> dict[str, dict[str, str]]:
    """The labels of every recorded Host (metadata labels, then spec labels over them), as placement reads them."""
    return {r.name: _labels(r) for r in records if r.kind is Kind.HOST}


def host_views(records: Sequence[ResourceRecord], samples: Mapping[str, HostSampleRecord]) -> list[HostView]:
    """One view per recorded Host (and per sampled host nebctl no longer records), by name."""
    hosts = {r.name: r for r in records if r.kind is Kind.HOST}
    allocated_cpu: dict[str, float] = {}
    allocated_memory: dict[str, float] = {}
    vm_count: dict[str, int] = {}
    for vm in records:
        if vm.kind is Kind.VIRTUAL_MACHINE and vm.host and vm.applied:
            allocated_cpu[vm.host] = allocated_cpu.get(vm.host, 0.0) + float(vm.applied.get("vcpu", 0))
            allocated_memory[vm.host] = allocated_memory.get(vm.host, 0.0) + float(vm.applied.get("memory", 0))
            vm_count[vm.host] = vm_count.get(vm.host, 0) + 1
    views = []
    for name in sorted(set(hosts) | set(samples)):
        record = hosts.get(name)
        spec = (record.applied or {}) if record is not None else {}
        sample = samples.get(name)
        reserved = spec.get("reserved") or {}
        overcommit = spec.get("overcommit") or {}
        attributes = dict(sample.attributes) if sample is not None else {}
        error = attributes.pop("error", None) if sample is not None and sample.state == ERROR else None
        if spec.get("enabled") is False or (sample is not None and sample.state == DISABLED):
            state = DISABLED
        elif sample is None:
            state = UNKNOWN
        else:
            state = ERROR if sample.state == ERROR else UP
        answered = sample is not None and sample.state != ERROR
        views.append(
            HostView(
                name=name,
                state=state,
                last_probe=sample.time if sample is not None else None,
                error=str(error) if error is not None else None,
                cpu=Capacity(
                    total=float(sample.cpu_total) if answered and sample else 0.0,
                    reserved=float(reserved.get("cpu", 0) or 0),
                    overcommit=float(overcommit.get("cpu", 1.0) or 1.0),
                    allocated=allocated_cpu.get(name, 0.0),
                ),
                memory=Capacity(
                    total=float(sample.memory_total) if answered and sample else 0.0,
                    reserved=float(reserved.get("memory", 0) or 0),
                    overcommit=float(overcommit.get("memory", 1.0) or 1.0),
                    allocated=allocated_memory.get(name, 0.0),
                ),
                cpu_load=sample.cpu_load if answered and sample else None,
                memory_used=sample.memory_used if answered and sample else None,
                disk_total=sample.disk_total if answered and sample else None,
                disk_used=sample.disk_used if answered and sample else None,
                vms=vm_count.get(name, 0),
                labels=_labels(record) if record is not None else {},
                attributes=attributes,
            )
        )
    return views


@dataclass(frozen=True)
class VMView:
    namespace: str
    name: str
    stack: str
    host: str | None
    state: str  # live state from the newest sample, else the record's status
    vcpu: int | None
    memory: int | None  # configured bytes
    labels: Mapping[str, str]
    sampled_at: datetime | None = None
    cpu: float | None = None  # percent of one CPU
    memory_used: int | None = None
    disk_read_rate: float | None = None  # bytes per second
    disk_write_rate: float | None = None
    net_rx_rate: float | None = None
    net_tx_rate: float | None = None

    @property
    def disk_rate(self) -> float | None:
        if self.disk_read_rate is None or self.disk_write_rate is None:
            return None
        return self.disk_read_rate + self.disk_write_rate

    @property
    def net_rate(self) -> float | None:
        if self.net_rx_rate is None or self.net_tx_rate is None:
            return None
        return self.net_rx_rate + self.net_tx_rate


def _rate(newer: int, older: int, seconds: float) -> float | None:
    if seconds <= 0 or newer < older:
        return None
    return (newer - older) / seconds


def vm_views(records: Sequence[ResourceRecord], samples: Sequence[VMSampleRecord]) -> list[VMView]:
    """One view per recorded VirtualMachine; ``samples`` are raw samples in time order (the newest last)."""
    newest: dict[tuple[str, str], list[VMSampleRecord]] = {}
    for sample in samples:
        pair = newest.setdefault((sample.namespace, sample.name), [])
        pair.append(sample)
        if len(pair) > 2:
            del pair[0]
    views = []
    for record in sorted(records, key=lambda r: (r.namespace, r.name)):
        if record.kind is not Kind.VIRTUAL_MACHINE:
            continue
        applied = record.applied or {}
        view = VMView(
            namespace=record.namespace,
            name=record.name,
            stack=record.stack,
            host=record.host,
            state=record.status,
            vcpu=int(applied["vcpu"]) if "vcpu" in applied else None,
            memory=int(applied["memory"]) if "memory" in applied else None,
            labels=_labels(record),
        )
        found = newest.get((record.namespace, record.name), [])
        if found:
            last = found[-1]
            view = replace(
                view, host=last.host, state=last.state, sampled_at=last.time, cpu=last.cpu, memory_used=last.memory_used
            )
            if len(found) == 2 and found[0].host == last.host:
                first = found[0]
                seconds = (last.time - first.time).total_seconds()
                view = replace(
                    view,
                    disk_read_rate=_rate(last.disk_read_bytes, first.disk_read_bytes, seconds),
                    disk_write_rate=_rate(last.disk_write_bytes, first.disk_write_bytes, seconds),
                    net_rx_rate=_rate(last.net_rx_bytes, first.net_rx_bytes, seconds),
                    net_tx_rate=_rate(last.net_tx_bytes, first.net_tx_bytes, seconds),
                )
        views.append(view)
    return views


@dataclass(frozen=True)
class HostTop:
    """``nebctl top hosts``: a host's probe figures and the sums of its VMs' rates."""

    name: str
    state: str
    vms: int
    cpus: int | None
    cpu_load: float | None
    vm_cpu: float  # sum of its VMs' CPU, percent of one CPU
    memory_total: int | None
    memory_used: int | None
    disk_read_rate: float
    disk_write_rate: float
    net_rx_rate: float
    net_tx_rate: float


def host_tops(hosts: Sequence[HostView], vms: Sequence[VMView]) -> list[HostTop]:
    tops = []
    for host in hosts:
        mine = [vm for vm in vms if vm.host == host.name]
        tops.append(
            HostTop(
                name=host.name,
                state=host.state,
                vms=len(mine),
                cpus=int(host.cpu.total) if host.cpu_load is not None else None,
                cpu_load=host.cpu_load,
                vm_cpu=sum(vm.cpu or 0.0 for vm in mine),
                memory_total=int(host.memory.total) if host.memory_used is not None else None,
                memory_used=host.memory_used,
                disk_read_rate=sum(vm.disk_read_rate or 0.0 for vm in mine),
                disk_write_rate=sum(vm.disk_write_rate or 0.0 for vm in mine),
                net_rx_rate=sum(vm.net_rx_rate or 0.0 for vm in mine),
                net_tx_rate=sum(vm.net_tx_rate or 0.0 for vm in mine),
            )
        )
    return tops
