"""Observed state from live monitoring: one host probe and one bulk VM probe per host, never one call per VM.

This is an I/O edge: it calls the monitoring drivers (through the registry handed in) and returns a
``LiveView`` value for the pure planner. Hosts are probed in parallel, since on real hypervisors each probe is
a network round trip; a host whose probe fails is reported in state ERROR, which makes its VMs unknown (never
stopped) to the planner.

``observations`` turns a ``LiveView`` into what the database keeps as the last observation of each resource
(``Store.record_observations``), so that ``get`` and ``describe`` can show the live state beside the record. It
is pure: ``diff`` and ``apply`` call it on the view they probed for the plan, a continuous monitor on each of its
rounds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from nebctl.database.records import ObservationRecord
from nebctl.drivers.errors import DriverError
from nebctl.drivers.states import HostLiveState
from nebctl.drivers.types import Family, HostProbe, HostRef, VMStatus
from nebctl.reconcilers.base import LiveView, RecordView
from nebctl.reconcilers.identity import VMIdentity
from nebctl.reconcilers.vm import VirtualMachineReconciler
from nebctl.schemas.keys import Kind, ResourceKey
from nebctl.schemas.models import AnyManifest, Host

log = logging.getLogger(__name__)


class DriverSource(Protocol):
    """What observation needs of the driver registry."""

    def for_host(self, host: HostRef, overrides: Any = None) -> Any: ...

    def get(self, family: Family, reference: str) -> Any: ...


def known_hosts(
    documents: Mapping[ResourceKey, AnyManifest], records: Mapping[ResourceKey, RecordView]
) -> dict[str, tuple[HostRef, Any]]:
    """Every host nebctl should look at: those of the manifests and those it recorded before (a host removed
    from the manifests may still carry VMs to delete). Value: the host reference and its driver overrides."""
    hosts: dict[str, tuple[HostRef, Any]] = {}
    for key, record in records.items():
        if key.kind is Kind.HOST and record.applied is not None:
            hosts[key.name] = (HostRef(key.name, str(record.applied["uri"])), record.applied.get("drivers"))
    for key, document in documents.items():
        if isinstance(document, Host):
            hosts[key.name] = (HostRef(key.name, document.spec.uri), document.spec.drivers)
    return hosts


def observe(hosts: Mapping[str, tuple[HostRef, Any]], registry: DriverSource, *, parallelism: int = 16) -> LiveView:
    """Probe every host and its VMs. Errors become hosts in state ERROR; nothing here raises for a bad host."""

    def probe(name: str) -> tuple[HostProbe, Sequence[VMStatus]]:
        ref, overrides = hosts[name]
        try:
            monitoring = registry.for_host(ref, overrides).monitoring
            host = monitoring.probe_host(ref)
            if host.state is HostLiveState.ERROR:
                return host, ()
            return host, monitoring.probe_vms(ref)
        except (DriverError, OSError, ValueError) as error:
            log.warning("host %s did not answer its probe: %s", name, error)
            return HostProbe(name=name, state=HostLiveState.ERROR, error=str(error)), ()

    names = sorted(hosts)
    if len(names) <= 1 or parallelism <= 1:
        results = [probe(name) for name in names]
    else:
        with ThreadPoolExecutor(max_workers=min(parallelism, len(names)), thread_name_prefix="probe") as pool:
            results = list(pool.map(probe, names))
    probes: dict[str, HostProbe] = {}
    vms: dict[str, VMStatus] = {}
    vm_hosts: dict[str, str] = {}
    for name, (host, statuses) in zip(names, results, strict=True):
        probes[name] = host
        for status in statuses:
            vms[status.uuid] = status
            vm_hosts[status.uuid] = name
    return LiveView(hosts=probes, vms=vms, vm_hosts=vm_hosts)


_VM = VirtualMachineReconciler()


def observations(records: Mapping[ResourceKey, RecordView], live: LiveView) -> list[ObservationRecord]:
    """What ``live`` says of each recorded host and VM it covers, with the drift from the record.

    A host is covered when it was probed; a VM when the host its record names was probed (its host not
    answering makes it ``unknown``, never stopped; an answering host without it makes it ``absent``). VMs not yet
    created (no applied spec) and the kinds monitoring does not probe one by one (networks, images...) get no
    observation. The drift sentences are the planner's own (the VM reconciler's ``observe``), so ``get`` says
    what ``diff`` would. Observations carry no time: the store stamps them.
    """
    found: list[ObservationRecord] = []
    for key, record in records.items():
        if key.kind is Kind.HOST:
            probe = live.hosts.get(key.name)
            if probe is not None:
                found.append(_host_observation(key, probe))
        elif key.kind is Kind.VIRTUAL_MACHINE and record.applied is not None:
            host = record.host or record.applied.get("host")
            if host in live.hosts:
                found.append(_vm_observation(key, record, live))
    return found


def _host_observation(key: ResourceKey, probe: HostProbe) -> ObservationRecord:
    details: dict[str, Any] = {}
    if probe.state is HostLiveState.ERROR:
        details["error"] = probe.error or "no answer"
    else:
        details.update(cpus=probe.cpus, memory=probe.memory, free_memory=probe.free_memory, load=probe.load)
    return ObservationRecord(key.kind, key.namespace, key.name, probe.state.value, details)


def _vm_observation(key: ResourceKey, record: RecordView, live: LiveView) -> ObservationRecord:
    observed = _VM.observe(key, record, live)
    details: dict[str, Any] = {"drift": [item.message for item in observed.drift]}
    host = record.host or (record.applied or {}).get("host")
    if observed.unknown:
        # The reconciler words a silent host as drift (it must not act on the VM); it is not a change of the VM.
        state = "unknown"
        details.update(host=host, drift=[])
    else:
        status = live.vms.get(VMIdentity.recorded(key, record.live).uuid)
        if status is None:
            state = "absent"
            details["host"] = host
        else:
            state = status.state.value
            uuid = status.uuid
            details.update(host=live.vm_hosts.get(uuid, host), vcpu=status.vcpu, memory=status.memory)
    return ObservationRecord(key.kind, key.namespace, key.name, state, details)
