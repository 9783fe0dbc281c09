"""Monitoring samples from one observation of the fleet, written in one bulk transaction.

Every observation (``observing.observe``: one host probe and one bulk VM probe per host) is worth keeping:
``nebctl hosts`` and ``nebctl top`` read the newest samples, and drift and placement read them too. This is the
one place that turns an observation into sample rows (``samples_of``, pure) and writes them
(``record_observation``): ``diff`` and ``apply`` call it through ``Controller.plan``, and the service's
monitoring loop calls it on every round, so every path records the same rows.

A VM sample names the VirtualMachine resource: the ownership metadata the VM carries says which, else the
record whose identity has the VM's UUID. VMs that nebctl does not own are not sampled.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from nebctl.core.keys import Kind, ResourceKey
from nebctl.database.records import HostSampleRecord, VMSampleRecord
from nebctl.database.store import Batch, Store
from nebctl.drivers.states import HostLiveState
from nebctl.drivers.types import HostProbe, VMStatus
from nebctl.reconcilers.base import LiveView, RecordView
from nebctl.reconcilers.identity import VMIdentity


def host_sample(probe: HostProbe, at: datetime) -> HostSampleRecord:
    """A host probe as a row. ``cpu_load`` is the share of the host's CPUs in use (0..1); an unanswered probe
    keeps its error under ``attributes["error"]``."""
    attributes = dict(probe.custom)
    if probe.state is HostLiveState.ERROR and probe.error:
        attributes["error"] = probe.error
    return HostSampleRecord(
        host=probe.name,
        time=at,
        state=probe.state.value,
        cpu_total=probe.cpus,
        cpu_load=probe.cpu_usage,
        memory_total=probe.memory,
        memory_used=max(0, probe.memory - probe.free_memory),
        disk_total=probe.disk_total,
        disk_used=max(0, probe.disk_total - probe.disk_free),
        attributes=attributes,
    )


def vm_sample(key: ResourceKey, host: str, status: VMStatus, at: datetime) -> VMSampleRecord:
    """A VM probe as a row: CPU in percent of one CPU, counters as the hypervisor reports them (cumulative)."""
    return VMSampleRecord(
        namespace=key.namespace,
        name=key.name,
        host=host,
        time=at,
        # ``_value_`` rather than ``value``: the same text without the enum property's lookup, which was the
        # largest cost of turning a fleet's observation into rows.
        state=status.state._value_,
        cpu=round(status.cpu_usage * 100.0, 3),
        memory_used=status.memory_used,
        disk_read_bytes=status.disk_read,
        disk_write_bytes=status.disk_write,
        net_rx_bytes=status.net_rx,
        net_tx_bytes=status.net_tx,
    )


def samples_of(
    live: LiveView,
    records: Mapping[ResourceKey, RecordView],
    at: datetime,
    only: Collection[str] | None = None,
    *,
    figures: Collection[str] = (),
) -> tuple[list[HostSampleRecord], list[VMSampleRecord]]:
    """The rows of one observation: one per probed host, one per VM nebctl owns on an answering host; of the hosts
    of ``only`` when given (those an observation probed again: the others' figures were sampled before), and the
    host rows alone of ``figures`` (hosts whose own probe was made again, not their VMs')."""
    if only is None:
        probes = sorted(live.hosts.items())
    else:
        probes = sorted((name, live.hosts[name]) for name in {*only, *figures})
    hosts = [host_sample(probe, at) for _, probe in probes]
    by_uuid: dict[str, ResourceKey] | None = None  # built only if some VM carries no ownership metadata
    vms = []
    vm_kind = Kind.VIRTUAL_MACHINE
    vm_kind_text = vm_kind.value
    vm_hosts = live.vm_hosts
    wanted = None if only is None else frozenset(only)
    # The VMs of the hosts wanted, told by their hosts: a view read back in chunks by host builds theirs only.
    statuses = live.vms
    chosen = statuses.items() if wanted is None else ((u, statuses.get(u)) for u, h in vm_hosts.items() if h in wanted)
    for uuid, status in chosen:
        if status is None:
            continue
        key: ResourceKey | None = None
        owner = status.owner
        if owner is not None and owner.kind == vm_kind_text:
            # What ``ResourceKey.of`` builds for a namespaced kind, without its call per VM.
            key = ResourceKey(vm_kind, owner.namespace, owner.name)
        else:
            if by_uuid is None:
                by_uuid = {
                    VMIdentity.recorded(k, r.live).uuid: k for k, r in records.items() if k.kind is Kind.VIRTUAL_MACHINE
                }
            key = by_uuid.get(uuid)
        if key is not None:
            vms.append(vm_sample(key, vm_hosts.get(uuid, ""), status, at))
    return hosts, vms


def record_observation(
    store: Store | Batch,
    live: LiveView,
    records: Mapping[ResourceKey, RecordView],
    at: datetime | None = None,
    *,
    only: Collection[str] | None = None,
    figures: Collection[str] = (),
) -> None:
    """Write the samples of one observation, hosts and VMs (of the hosts of ``only`` when given, and the host rows
    alone of ``figures``), in one transaction (at the store's clock)."""
    hosts, vms = samples_of(live, records, at or store._now(), only, figures=figures)
    if hosts or vms:
        store.add_samples(hosts, vms)
