"""Where each desired VM goes: the scheduler's candidates from the Host documents and the hosts' probes, every
VM's request, and its decisions (``controller.placement`` chooses; this feeds it and reads its answers).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from nebctl.controller import placement as placing
from nebctl.controller import unplaced
from nebctl.controller.planning.request import PlanRequest, sort_key
from nebctl.core.keys import Kind, ResourceKey
from nebctl.drivers.states import HostLiveState
from nebctl.reconcilers.base import RecordView
from nebctl.schemas.instance_types import KNOWN as KNOWN_INSTANCE_TYPES
from nebctl.schemas.instance_types import InstanceType, smallest_fitting
from nebctl.schemas.models import (
    AnyManifest,
    Host,
    PlacementInputs,
    VirtualMachine,
    placement_inputs,
)


@runtime_checkable
class _PlacementInputs(Protocol):
    """Documents that tell what placing each VM reads without reading every VM
    (``schemas.caching.CachedDocuments``)."""

    def placement_inputs(self) -> Mapping[ResourceKey, PlacementInputs]: ...


def _vm_inputs(documents: Mapping[ResourceKey, AnyManifest]) -> Mapping[ResourceKey, PlacementInputs]:
    """What placing each VM of ``documents`` reads of it, by key: told by the documents when they can (reading every
    VM of a set from the manifest cache was most of placing 10,000 VMs again), else read from each."""
    if isinstance(documents, _PlacementInputs):
        return documents.placement_inputs()
    return {key: placement_inputs(doc) for key, doc in documents.items() if isinstance(doc, VirtualMachine)}


def _candidates(request: PlanRequest, hosts: Sequence[str]) -> list[placing.HostCandidate]:
    candidates = []
    for name in hosts:
        document = request.documents[ResourceKey.of(Kind.HOST, name)]
        assert isinstance(document, Host)
        spec = document.spec
        probe = request.live.hosts.get(name)
        online = probe is not None and probe.state is HostLiveState.ONLINE
        if spec.cloud is not None:
            # A cloud host's room is its capacity map, not what its probe reports (a cloud has no fixed size).
            slots = {kind: (KNOWN_INSTANCE_TYPES[kind], count) for kind, count in sorted(spec.cloud.capacity.items())}
            candidates.append(
                placing.HostCandidate(
                    name=name,
                    enabled=spec.enabled,
                    online=online,
                    labels={**document.metadata.labels, **spec.labels},
                    custom=dict(probe.custom) if probe else {},
                    tier=spec.effective_tier,
                    cloud=True,
                    slots=slots,
                )
            )
            continue
        candidates.append(
            placing.HostCandidate(
                name=name,
                enabled=spec.enabled,
                online=online,
                cpus=float(probe.cpus if probe else 0),
                memory=probe.memory if probe else 0,
                reserved_cpu=spec.reserved.cpu,
                reserved_memory=spec.reserved.memory,
                overcommit_cpu=spec.overcommit.cpu,
                overcommit_memory=spec.overcommit.memory,
                allocated_cpu=0.0,
                allocated_memory=0,
                # A host that reports no storage at all (a libvirt host whose pools this very plan creates)
                # has an unknown free disk, not none: the datastore actions report a real shortage.
                disk_free=probe.disk_free if probe and probe.disk_total > 0 else None,
                load=probe.cpu_usage if probe else 0.0,
                labels={**document.metadata.labels, **spec.labels},
                custom=dict(probe.custom) if probe else {},
                tier=spec.effective_tier,
            )
        )
    return candidates


def _instance_type_of(record: RecordView, slots: Mapping[str, tuple[InstanceType, int]]) -> str | None:
    """The instance type another VM on a cloud host holds: the one its deploy recorded, else the smallest type
    of the capacity map that fits its size (a record from before types were recorded); None when neither."""
    recorded = record.live.get("instanceType")
    if isinstance(recorded, str) and recorded in slots:
        return recorded
    applied = record.applied or {}
    fitting = smallest_fitting(
        (kind for kind, _ in slots.values()), int(applied.get("vcpu", 0)), int(applied.get("memory", 0))
    )
    return fitting.name if fitting is not None else None


def _left(
    slots: Mapping[str, tuple[InstanceType, int]] | None, taken: Mapping[str, int] | None
) -> Mapping[str, tuple[InstanceType, int]] | None:
    """A cloud host's capacity map less the instances VMs outside this plan hold there (other stacks' VMs and
    this stack's VMs no longer in the manifests): they run, so they count against the map like placed ones."""
    if slots is None or not taken:
        return slots
    return {name: (kind, max(0, count - taken.get(name, 0))) for name, (kind, count) in slots.items()}


def place_vms(
    request: PlanRequest,
    own: Mapping[ResourceKey, RecordView],
    hosts: Sequence[str],
    problems: list[str],
    deposing: frozenset[ResourceKey] = frozenset(),
    *,
    details: list[str] | None = None,
    notes: dict[ResourceKey, str] | None = None,
    instance_types: dict[ResourceKey, str] | None = None,
) -> dict[ResourceKey, str]:
    """Where every desired VM goes: its current host while it still fits there, else the policy's choice. The
    old VM of a create-first replacement (``deposing``) is a record outside the manifests: it keeps its share."""
    vms = _vm_inputs(request.documents)
    candidates = _candidates(request, hosts)
    # VMs that are not part of this plan's requests (other stacks, or not in the manifests) keep their share.
    allocated_cpu: dict[str, float] = defaultdict(float)
    allocated_memory: dict[str, int] = defaultdict(int)
    slots_of = {candidate.name: candidate.slots for candidate in candidates if candidate.slots is not None}
    taken: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # cloud host -> type -> instances
    for key, other in request.records.items():
        if key.kind is Kind.VIRTUAL_MACHINE and key not in vms and other.host and other.applied:
            allocated_cpu[other.host] += float(other.applied.get("vcpu", 0))
            allocated_memory[other.host] += int(other.applied.get("memory", 0))
            slots = slots_of.get(other.host)
            if slots is not None:
                kind = _instance_type_of(other, slots)
                if kind is not None:
                    taken[other.host][kind] += 1
    candidates = [
        placing.HostCandidate(
            **{
                **candidate.__dict__,
                "allocated_cpu": candidate.allocated_cpu + allocated_cpu[candidate.name],
                "allocated_memory": candidate.allocated_memory + allocated_memory[candidate.name],
                "slots": _left(candidate.slots, taken.get(candidate.name)),
            }
        )
        for candidate in candidates
    ]
    requests = []
    known = set(hosts)  # not the host list: a lookup per VM in a list of every host was quadratic
    for key in sorted(vms, key=sort_key):
        vcpu, memory, disk, placement = vms[key]
        record = own.get(key)
        current = record.host if record is not None and record.host in known else None
        requests.append(
            placing.PlacementRequest(
                vm=str(key), vcpu=vcpu, memory=memory, disk=disk, placement=placement, current_host=current
            )
        )
    decisions = placing.place(requests, candidates)
    placements: dict[ResourceKey, str] = {}
    by_name = {str(key): key for key in vms}
    failed: list[unplaced.Unplaced] = []
    details = details if details is not None else []
    for decision in decisions:
        key = by_name[decision.vm]
        if decision.host is None:
            beside = " beside the VM it replaces (lifecycle.createBeforeDestroy)" if key in deposing else ""
            failed.append(unplaced.Unplaced(str(key), decision.reasons, beside))
        else:
            placements[key] = decision.host
            if instance_types is not None and decision.instance_type:
                instance_types[key] = decision.instance_type
            if notes is not None and (decision.instance_type or decision.reason):
                # What the plan says beside a VM that goes to a cloud host: its instance type, and why there.
                words = [f"instance type {decision.instance_type}"] if decision.instance_type else []
                notes[key] = "; ".join([*words, *([decision.reason] if decision.reason else [])])
    if failed:
        problems += unplaced.brief(failed)
        details += unplaced.every_host(failed)
    return placements
