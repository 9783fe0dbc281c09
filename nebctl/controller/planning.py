"""Diff and plan: from the desired state (manifests) and the observed state (records + monitoring) to a Plan.

``make_plan`` is pure: it takes values and returns a ``Plan`` (or raises ``PlanError`` listing every reason the
plan cannot be made), with no I/O, clock or randomness, so the same input always gives the same plan. It
decides, in this order: which hosts each multi-host resource spans, where new VMs go (``placement``), which
address each NIC leases, what changed for every resource (manifest changes and drift, through the kind's
reconciler), what may not happen (preventDestroy, shrinking disks, immutable fields, images still in use),
what ``--target``/``--exclude`` keep, and finally the action graph with the order between resources.

A VM replaced with ``lifecycle.createBeforeDestroy`` is only known to be replaced once its changes are known,
after placement and leases; but its new VM must be placed beside the old one and lease other addresses. So
when a first pass finds such replacements, the plan is made again with the old VMs *deposed* (``_deposing``):
each kept as a record of its own, deleted once its replacement runs, as the apply's journal will write it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import ipaddress
import json
import socket
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nebctl.controller import placement as placing
from nebctl.controller import unplaced
from nebctl.controller.plans import Action, ChangeType, DriftItem, Edges, Plan, ResourceChange
from nebctl.drivers.states import HostLiveState
from nebctl.reconcilers.base import ActionGroup, LiveView, PlanningContext, RecordView, with_metadata
from nebctl.reconcilers.catalogue import RECONCILERS
from nebctl.reconcilers.fields import AddedFields, Effect, FieldChange, compare, dearest, flatten
from nebctl.reconcilers.identity import MAC_BITS, VMIdentity, deposed_of, mac_address
from nebctl.reconcilers.spanned import SpannedReconciler
from nebctl.reconcilers.vm import deposition, disk_total
from nebctl.schemas.instance_types import KNOWN as KNOWN_INSTANCE_TYPES
from nebctl.schemas.keys import Kind, ResourceKey
from nebctl.schemas.models import (
    AnyManifest,
    Host,
    Image,
    Network,
    VirtualMachine,
    spec_document,
)
from nebctl.schemas.quantities import format_quantity

# The order resources are listed in a plan, and the tie-break among independent resources.
KIND_ORDER = [
    Kind.HOST,
    Kind.DATASTORE,
    Kind.MARKETPLACE,
    Kind.IMAGE,
    Kind.NETWORK,
    Kind.SECURITY_GROUP,
    Kind.VIRTUAL_MACHINE,
    Kind.HOOK,
]
_DESTROY_OPERATIONS = frozenset({"undeploy", "clean", "delete", "delete_datastore", "delete_sg"})
_RELEASE_OPERATIONS = _DESTROY_OPERATIONS | {"shutdown"}


class PlanError(Exception):
    """The plan cannot be made; ``problems`` lists every reason, each naming the resource. ``details`` says more
    where a problem is a summary (every host's reason for a VM that fits on no host), for ``-v``."""

    def __init__(self, problems: Sequence[str], details: Sequence[str] = ()) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)
        self.details = list(details)


@dataclass(frozen=True)
class QuotaLimit:
    """Most a namespace may hold, all stacks together; None means no limit on that dimension."""

    namespace: str
    vms: int | None = None
    vcpu: int | None = None
    memory: int | None = None
    disk: int | None = None


@dataclass(frozen=True)
class PlanRequest:
    stack: str
    documents: Mapping[ResourceKey, AnyManifest]
    records: Mapping[ResourceKey, RecordView]  # every record of the database, all stacks
    live: LiveView
    prune: bool = False
    targets: frozenset[ResourceKey] = frozenset()
    excludes: frozenset[ResourceKey] = frozenset()
    host_capacity: Mapping[str, placing.HostCandidate] = field(default_factory=dict)  # overrides (tests)
    quotas: Sequence[QuotaLimit] = ()
    mac_bits: int = MAC_BITS  # of the digest a derived MAC takes (``identity.mac_address``)


def make_plan(request: PlanRequest) -> Plan:
    """The plan for ``request``; raises ``PlanError`` with every problem found."""
    return plan_with_specs(request)[0]


def plan_with_specs(request: PlanRequest) -> tuple[Plan, dict[ResourceKey, dict[str, Any]]]:
    """The plan, and the resolved spec of every resource the manifests declare (host, leases, datastores and
    spans filled in): what each record's ``applied`` becomes once its actions succeed. The specs hold secrets
    in clear, which is why they travel beside the plan and never inside it."""
    with _collector_paused():
        return _plan_with_specs(request)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Planning allocates a few objects per field of every resource and frees them in bulk, without reference
    cycles to speak of: the cyclic collector's passes over that growing heap were 40% of a 10,000-VM no-op plan.
    Reference counting still frees everything; the collector resumes (if it ran before) when planning ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _plan_with_specs(
    original: PlanRequest,
    deposing: frozenset[ResourceKey] = frozenset(),
    refused: frozenset[ResourceKey] = frozenset(),
) -> tuple[Plan, dict[ResourceKey, dict[str, Any]]]:
    """The plan, with the VMs of ``deposing`` replaced create-first (their old VMs deposed); ``refused`` are
    VMs that asked for it but turned out not to be replaced once planned so (they are not asked again)."""
    request = _deposing(original, deposing)
    problems: list[str] = []
    own = {key: record for key, record in request.records.items() if record.stack == request.stack}
    foreign = [key for key in request.documents if key in request.records and key not in own]
    for key in sorted(foreign, key=_sort_key):  # only the few found are sorted, not every document
        other = request.records[key]
        problems.append(f"{key}: belongs to stack {other.stack!r}; nebctl never touches another stack's objects")
    hosts = sorted(key.name for key in request.documents if key.kind is Kind.HOST)
    spans = _spans(request.documents, hosts)
    details: list[str] = []
    notes: dict[ResourceKey, str] = {}
    instance_types: dict[ResourceKey, str] = {}
    placements = _place(
        request, own, hosts, problems, deposing, details=details, notes=notes, instance_types=instance_types
    )
    leases = _leases(request, own, problems, deposing)
    disk_datastores = _disk_datastores(request.documents, spans, placements, problems)
    specs: dict[ResourceKey, dict[str, Any]] = {}  # filled in by _changes, read by the reconcilers' actions
    ctx = PlanningContext(
        stack=request.stack,
        documents=request.documents,
        records=own,
        hosts=hosts,
        spans=spans,
        placements=placements,
        leases=leases,
        disk_datastores=disk_datastores,
        specs=specs,
        incarnations=(incarnations := _incarnations(own, deposing)),
        macs=_macs(request, own, incarnations, deposing, problems),
        instance_types=instance_types,
    )
    changes, drift, warnings = _changes(request, own, ctx, problems, specs, deposing=deposing, notes=notes)
    replaced = {c.key for c in changes if c.type is ChangeType.REPLACE}
    wanted = _created_first(changes, request) - deposing - refused
    stale = deposing - replaced
    if wanted or stale:  # plan again, with the old VMs of these replacements deposed (see the module's docstring)
        return _plan_with_specs(original, (deposing | wanted) - stale, refused | stale)
    _check_created_first(changes, request, problems)
    changes = _select(changes, request, own)
    _check_deletions(changes, request, own, problems, specs)
    _check_quotas(request, problems)
    if problems:
        raise PlanError(problems, details)
    actions, edges = _action_graph(changes, ctx, request, specs)
    plan = Plan(
        stack=request.stack,
        changes=tuple(changes),
        actions=tuple(actions),
        edges=edges,
        fingerprint=fingerprint(original),  # what the state was: the deposed records are not written yet
        drift=tuple(drift),
        warnings=tuple(warnings),
    )
    return plan, specs


# --- create before destroy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DeposedView:
    """The record a create-first replacement will leave for the old VM (``vm.deposition``), as planning reads it
    before the apply writes it."""

    stack: str
    applied: Mapping[str, Any] | None
    status: str
    live: Mapping[str, Any]
    host: str | None


def _deposing(request: PlanRequest, deposing: frozenset[ResourceKey]) -> PlanRequest:
    """``request`` as it will be once the old VMs of ``deposing`` are deposed: each has its own record, being
    deleted, which holds its host's capacity and its addresses until it is gone."""
    if not deposing:
        return request
    records = dict(request.records)
    # In key order, each deposed key taken once chosen: the order and the keys the apply's journal uses.
    taken = set(request.records)
    for key in sorted(deposing, key=_sort_key):
        record = request.records[key]
        deposed, live, _ = deposition(key, record.live, taken)
        taken.add(deposed)
        records[deposed] = _DeposedView(record.stack, record.applied, "deleting", live, record.host)
    return dataclasses.replace(request, records=records)


def _incarnations(own: Mapping[ResourceKey, RecordView], deposing: frozenset[ResourceKey]) -> dict[ResourceKey, int]:
    """Every VM's incarnation where it is not 0: the recorded one, or the next one for a create-first
    replacement."""
    incarnations = {}
    for key, record in own.items():
        if key.kind is Kind.VIRTUAL_MACHINE and record.live.get("incarnation"):
            incarnations[key] = int(record.live["incarnation"])
    for key in deposing:
        incarnations[key] = VMIdentity.recorded(key, own[key].live).incarnation + 1
    return incarnations


def _created_first(changes: Sequence[ResourceChange], request: PlanRequest) -> frozenset[ResourceKey]:
    """The replaced VMs whose manifests ask for the new VM before the old one goes."""
    wanted = set()
    for change in changes:
        if change.type is ChangeType.REPLACE and not change.create_first:
            document = request.documents.get(change.key)
            if isinstance(document, VirtualMachine) and document.spec.lifecycle.createBeforeDestroy:
                wanted.add(change.key)
    return frozenset(wanted)


def _check_created_first(changes: Sequence[ResourceChange], request: PlanRequest, problems: list[str]) -> None:
    """A create-first replacement cannot use what this plan deletes and then creates again: the old VM uses it
    too, so it would have to be gone before that is deleted, and the new VM can only come once it is created
    again: the old VM would go first, the order createBeforeDestroy asks not to have. Said plainly instead of
    making a plan that cannot run."""
    first = [c for c in changes if c.create_first]
    if not first:
        return
    recreated = {c.key for c in changes if c.type is ChangeType.REPLACE and not c.create_first}
    for change in first:
        document = request.documents.get(change.key)
        used = references(change.key, spec_document(document)) if document is not None else set()
        for ref in sorted(used & recreated, key=_sort_key):
            problems.append(
                f"{change.key}: lifecycle.createBeforeDestroy cannot be honoured: {ref}, which both the old and the"
                " new VM use, is replaced by this plan (deleted, then created), so the old VM would have to go"
                " before the new one is created; drop createBeforeDestroy for this change"
            )


# --- spans, placement, leases -----------------------------------------------------------------------------


def _spans(documents: Mapping[ResourceKey, AnyManifest], hosts: Sequence[str]) -> dict[ResourceKey, tuple[str, ...]]:
    spans = {}
    for key, document in documents.items():
        reconciler = RECONCILERS[key.kind]
        if isinstance(reconciler, SpannedReconciler):
            spans[key] = reconciler.span(key, document, documents, hosts)
    return spans


def _vm_disk_total(vm: VirtualMachine) -> int:
    """Disk a VM asks for (placement and quotas); a clone without a size counts as nothing extra."""
    return sum(disk.size or 0 for disk in vm.spec.disks)


def _candidates(request: PlanRequest, hosts: Sequence[str]) -> list[placing.HostCandidate]:
    candidates = []
    for name in hosts:
        if name in request.host_capacity:
            candidates.append(request.host_capacity[name])
            continue
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


def _place(
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
    vms = {key: doc for key, doc in request.documents.items() if isinstance(doc, VirtualMachine)}
    candidates = _candidates(request, hosts)
    # VMs that are not part of this plan's requests (other stacks, or not in the manifests) keep their share.
    allocated_cpu: dict[str, float] = defaultdict(float)
    allocated_memory: dict[str, int] = defaultdict(int)
    for key, other in request.records.items():
        if key.kind is Kind.VIRTUAL_MACHINE and key not in vms and other.host and other.applied:
            allocated_cpu[other.host] += float(other.applied.get("vcpu", 0))
            allocated_memory[other.host] += int(other.applied.get("memory", 0))
    candidates = [
        placing.HostCandidate(
            **{
                **candidate.__dict__,
                "allocated_cpu": candidate.allocated_cpu + allocated_cpu[candidate.name],
                "allocated_memory": candidate.allocated_memory + allocated_memory[candidate.name],
            }
        )
        for candidate in candidates
    ]
    requests = []
    known = set(hosts)  # not the host list: a lookup per VM in a list of every host was quadratic
    for key in sorted(vms, key=_sort_key):
        vm = vms[key]
        record = own.get(key)
        current = record.host if record is not None and record.host in known else None
        requests.append(
            placing.PlacementRequest(
                vm=str(key),
                vcpu=vm.spec.vcpu,
                memory=vm.spec.memory,
                disk=_vm_disk_total(vm),
                placement=vm.spec.placement,
                current_host=current,
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


def _leases(
    request: PlanRequest,
    own: Mapping[ResourceKey, RecordView],
    problems: list[str],
    deposing: frozenset[ResourceKey] = frozenset(),
) -> dict[tuple[ResourceKey, int], str]:
    """The address of every NIC: static when given, the one leased before when still valid, else the lowest free
    address of the network's range (VMs in key order, so the result does not depend on input order). The new
    VM of a create-first replacement (``deposing``) runs beside the old one: it gets addresses of its own."""
    # Addresses are handled as integers: parsing tens of thousands of recorded ones with ``ipaddress`` took
    # longer than the rest of a no-op plan's lease work.
    leases: dict[tuple[ResourceKey, int], str] = {}
    used: dict[ResourceKey, set[int]] = defaultdict(set)
    vms = sorted(
        ((key, doc) for key, doc in request.documents.items() if isinstance(doc, VirtualMachine)),
        key=lambda item: _sort_key(item[0]),
    )
    networks = {key: doc for key, doc in request.documents.items() if isinstance(doc, Network)}
    ranges = {
        key: (*map(int, doc.spec.effective_range), int(doc.spec.effective_gateway)) for key, doc in networks.items()
    }
    # The lowest address of each network that may still be free: addresses are only taken during the loop
    # below, so the next free one is never below the last one found (without this, leasing n addresses
    # rescanned the range from its start every time, n^2 / 2 steps).
    cursor: dict[ResourceKey, int] = {}
    # Static addresses first, then addresses recorded for VMs that stay, so new leases avoid both.
    static: dict[ResourceKey, set[int]] = defaultdict(set)
    for key, vm in vms:
        for nic in vm.spec.nics:
            if nic.ip is not None:
                static[ResourceKey.of(Kind.NETWORK, nic.network, key.namespace)].add(int(nic.ip))
    for network_key, addresses in static.items():
        used[network_key] |= addresses
    # Addresses of old VMs that create-first replacements deposed: held until the old VM goes, after the new one
    # runs, so no VM of this plan may have them (the new one would have to wait for the old one to go).
    deposed: dict[tuple[ResourceKey, int], ResourceKey] = {}
    for key, stored in request.records.items():
        if key.kind is not Kind.VIRTUAL_MACHINE or stored.applied is None:
            continue
        held = deposed_of(key, stored.live) is not None
        if not held and key not in request.documents and stored.stack == request.stack and request.prune:
            continue  # deleted by this plan: its addresses are free again
        for nic in stored.applied.get("nics", []):
            if nic.get("ip"):
                network_key = ResourceKey.of(Kind.NETWORK, nic["network"], key.namespace)
                used[network_key].add(_address(nic["ip"]))
                if held:
                    deposed[(network_key, _address(nic["ip"]))] = key
    for key, vm in vms:
        record = own.get(key)
        old_nics = record.applied.get("nics", []) if record is not None and record.applied else []
        for index, nic in enumerate(vm.spec.nics):
            network_key = ResourceKey.of(Kind.NETWORK, nic.network, key.namespace)
            if nic.ip is not None:
                leases[(key, index)] = str(nic.ip)
                holder = deposed.get((network_key, int(nic.ip))) if deposed else None
                if holder is not None:
                    problems.append(
                        f"{key}: nics[{index}].ip {nic.ip} is held by {holder}, the VM it replaces, until the new"
                        " VM runs (lifecycle.createBeforeDestroy); give the new VM another address, or drop"
                        " createBeforeDestroy"
                    )
                continue
            previous = old_nics[index] if index < len(old_nics) and key not in deposing else None
            network = networks.get(network_key)
            if network is None:
                continue  # reported by validation
            first, last, gateway = ranges[network_key]
            if previous and previous.get("network") == nic.network and previous.get("ip"):
                address = _address(previous["ip"])
                # Kept unless another NIC now asks for it as its static address (the static one wins).
                if first <= address <= last and address not in static[network_key]:
                    leases[(key, index)] = str(previous["ip"])
                    continue
            free = _free_address(cursor.get(network_key, first), last, used[network_key], gateway)
            if free is None:
                problems.append(f"{key}: nics[{index}]: no free address left in network/{nic.network}")
                continue
            cursor[network_key] = free
            used[network_key].add(free)
            leases[(key, index)] = str(ipaddress.IPv4Address(free))
    return leases


def _macs(
    request: PlanRequest,
    own: Mapping[ResourceKey, RecordView],
    incarnations: Mapping[ResourceKey, int],
    deposing: frozenset[ResourceKey],
    problems: list[str],
) -> dict[tuple[ResourceKey, int], str]:
    """The MAC of every NIC of the manifests, none given to two NICs of the installation. A NIC keeps the MAC
    it has (the one its VM was created with, or the one an interrupted create already prepared, so a resumed
    apply plans it again); a new one takes its first derived MAC that no other NIC has, new NICs in key order,
    so a collision is resolved the same way on every plan. The new VM of a create-first replacement
    (``deposing``) gets MACs of its own: the old one keeps its MACs until it is gone."""
    vms = sorted(
        ((key, doc) for key, doc in request.documents.items() if isinstance(doc, VirtualMachine)),
        key=lambda item: _sort_key(item[0]),
    )
    macs: dict[tuple[ResourceKey, int], str] = {}
    used: set[str] = set()
    for key, stored in request.records.items():
        if key.kind is not Kind.VIRTUAL_MACHINE:
            continue
        if key in request.documents and key in own and key not in deposing:
            continue  # its kept MACs are taken below
        if key not in request.documents and key in own and request.prune and deposed_of(key, stored.live) is None:
            continue  # deleted by this plan: its MACs are free again
        used.update(_recorded_macs(stored).values())
    for key, vm in vms:
        record = own.get(key)
        if record is None or key in deposing:
            continue
        kept = _recorded_macs(record)
        for index in range(len(vm.spec.nics)):
            if index in kept:
                macs[(key, index)] = kept[index]
                used.add(kept[index])
    limit = 1 << request.mac_bits  # more attempts than MACs of that width: the installation is full
    for key, vm in vms:
        incarnation = incarnations.get(key, 0)
        for index in range(len(vm.spec.nics)):
            if (key, index) in macs:
                continue
            attempt = 0
            mac = mac_address(key, index, incarnation, 0, request.mac_bits)
            while mac in used and attempt < limit:
                attempt += 1
                mac = mac_address(key, index, incarnation, attempt, request.mac_bits)
            if mac in used:
                # A nearly full range: the derived ones missed the few free MACs; the next free one after the
                # last tried, in order (as deterministic, and it finds one whenever one is left).
                found = _next_free_mac(mac, used, request.mac_bits)
                if found is None:
                    problems.append(f"{key}: nics[{index}]: no free MAC address left")
                    continue
                mac = found
            used.add(mac)
            macs[(key, index)] = mac
    return macs


def _next_free_mac(after: str, used: set[str], bits: int) -> str | None:
    """The first MAC after ``after`` (wrapping around the ``bits``-bit range) that is not in ``used``."""
    size = 1 << bits
    value = int(after.replace(":", "")[6:], 16)  # a MAC of that width is below ``size`` (``mac_address``)
    for step in range(1, size + 1):
        candidate = (value + step) % size
        mac = "52:54:00:" + ":".join(f"{byte:02x}" for byte in candidate.to_bytes(3, "big"))
        if mac not in used:
            return mac
    return None


def _recorded_macs(record: RecordView) -> dict[int, str]:
    """NIC index -> MAC a VM's record knows: of its applied spec, or prepared by an unfinished apply."""
    found: dict[int, str] = {}
    for index, nic in enumerate((record.applied or {}).get("nics", [])):
        if nic.get("mac"):
            found[index] = str(nic["mac"])
    for name, value in record.live.items():
        if name.startswith("nic.") and isinstance(value, Mapping) and value.get("mac"):
            found.setdefault(int(name[4:]), str(value["mac"]))
    return found


def _address(text: str) -> int:
    """A recorded (canonical, dotted-quad) IPv4 address as an integer."""
    return int.from_bytes(socket.inet_aton(text), "big")


def _free_address(first: int, last: int, used: set[int], gateway: int) -> int | None:
    address = first
    while address <= last:
        if address not in used and address != gateway:
            return address
        address += 1
    return None


def _disk_datastores(
    documents: Mapping[ResourceKey, AnyManifest],
    spans: Mapping[ResourceKey, tuple[str, ...]],
    placements: Mapping[ResourceKey, str],
    problems: list[str],
) -> dict[tuple[ResourceKey, int], str]:
    """Each disk's datastore: its own, else its image's, else the first datastore on the VM's host."""
    datastores = sorted(key.name for key in documents if key.kind is Kind.DATASTORE)
    # Spans as sets, and the first datastore of each host: a span lists every host, and scanning it for each
    # disk was most of this function's time on a large fleet.
    span_sets = {ds: set(spans.get(ResourceKey.of(Kind.DATASTORE, ds), ())) for ds in datastores}
    first_on_host: dict[str, str] = {}
    for ds in datastores:
        for on in span_sets[ds]:
            first_on_host.setdefault(on, ds)
    chosen: dict[tuple[ResourceKey, int], str] = {}
    for key, document in documents.items():
        if not isinstance(document, VirtualMachine):
            continue
        host = placements.get(key)
        if host is None:
            continue  # not placed: already reported, and its disks have nowhere to go
        for index, disk in enumerate(document.spec.disks):
            name = disk.datastore
            if name is None and disk.image is not None:
                image = documents.get(ResourceKey.of(Kind.IMAGE, disk.image, key.namespace))
                name = image.spec.datastore if isinstance(image, Image) else None
            if name is None:
                name = first_on_host.get(host)
            if name is None:
                problems.append(f"{key}: disks[{index}]: no datastore on host {host} to hold the disk")
                continue
            if name in span_sets and host not in span_sets[name]:
                problems.append(f"{key}: disks[{index}]: datastore/{name} is not available on host {host}")
            chosen[(key, index)] = name
    return chosen


# --- changes --------------------------------------------------------------------------------------------------


def _changes(
    request: PlanRequest,
    own: Mapping[ResourceKey, RecordView],
    ctx: PlanningContext,
    problems: list[str],
    specs: dict[ResourceKey, dict[str, Any]],
    *,
    deposing: frozenset[ResourceKey] = frozenset(),
    notes: Mapping[ResourceKey, str] | None = None,
) -> tuple[list[ResourceChange], list[DriftItem], list[str]]:
    changes: list[ResourceChange] = []
    uncorrected: list[DriftItem] = []
    warnings: list[str] = []
    for key in sorted(request.documents.keys() | own.keys(), key=_sort_key):
        reconciler = RECONCILERS[key.kind]
        document = request.documents.get(key)
        record = own.get(key)
        if document is None:
            assert record is not None
            # A deposed old VM is always deleted, whatever became of an earlier attempt: it only waited for
            # its replacement.
            if request.prune or record.status == "deleting" or deposed_of(key, record.live) is not None:
                changes.append(
                    ResourceChange(key, ChangeType.DELETE, host=record.host, reason=_deleting_reason(key, record))
                )
            else:
                warnings.append(f"{key} is no longer in the manifests; it is kept (use --prune to delete it)")
            continue
        desired = specs[key] = with_metadata(reconciler.desired_spec(key, document, ctx), document)
        host = ctx.placements.get(key) if key.kind is Kind.VIRTUAL_MACHINE else None
        if record is None or record.applied is None:
            problems.extend(_foreign_live_object(key, record, request))
            reason = "resuming an interrupted create" if record is not None else (notes or {}).get(key, "")
            changes.append(
                ResourceChange(key, ChangeType.CREATE, _added(desired, reconciler.sensitive), host=host, reason=reason)
            )
            continue
        observed = reconciler.observe(key, record, request.live)
        if observed.unknown:
            uncorrected.extend(observed.drift)
            changes.append(ResourceChange(key, ChangeType.NOOP, host=record.host))
            continue
        if observed.spec is None:
            changes.append(
                ResourceChange(
                    key,
                    ChangeType.CREATE,
                    _added(desired, reconciler.sensitive),
                    host=host,
                    reason="deleted outside nebctl",
                    drift=observed.drift,
                )
            )
            continue
        if observed.spec == desired:
            # The common case of a converged resource: equal specs have no field to list, and comparing them
            # field by field (flatten, sort, rule lookups) is most of a no-op plan's time.
            changes.append(ResourceChange(key, ChangeType.NOOP, host=record.host, drift=observed.drift))
            continue
        ignored = _ignored(document)
        fields = compare(
            observed.spec,
            desired,
            rules=reconciler.rules,
            default=reconciler.default,
            sensitive=reconciler.sensitive,
            ignored=ignored,
        )
        effect = dearest(fields)
        unchanged = max(0, len(_flat_paths(desired)) - len(fields))
        for change in fields:
            if change.effect is Effect.IMMUTABLE:
                problems.append(f"{key}: {change.path} cannot change ({change.why})")
        if key.kind is Kind.VIRTUAL_MACHINE and effect is not Effect.REPLACE:
            # A replaced VM gets new disks: a smaller one is not a shrink.
            problems.extend(_shrinking_disks(key, fields))
        if not fields:
            changes.append(ResourceChange(key, ChangeType.NOOP, host=record.host, drift=observed.drift))
        elif effect is Effect.REPLACE:
            changes.append(
                ResourceChange(
                    key,
                    ChangeType.REPLACE,
                    tuple(fields),
                    host=host or record.host,
                    previous_host=record.host,
                    drift=observed.drift,
                    unchanged=unchanged,
                    create_first=key in deposing,
                )
            )
        else:
            previous_host = observed.spec.get("host") if key.kind is Kind.VIRTUAL_MACHINE else None
            changes.append(
                ResourceChange(
                    key,
                    ChangeType.UPDATE,
                    tuple(fields),
                    restart=effect is Effect.RESTART,
                    host=host or record.host,
                    previous_host=previous_host,
                    drift=observed.drift,
                    unchanged=unchanged,
                )
            )
    return changes, uncorrected, warnings


def _foreign_live_object(key: ResourceKey, record: RecordView | None, request: PlanRequest) -> list[str]:
    """A VM about to be created whose UUID is already taken by a live VM nebctl does not own for this stack:
    nebctl never touches it (``nebctl import`` adopts a VM on purpose)."""
    other = request.records.get(key)
    if key.kind is not Kind.VIRTUAL_MACHINE or (other is not None and other.stack != request.stack):
        return []  # not a VM, or already reported as another stack's resource
    uuid = VMIdentity.recorded(key, record.live if record is not None else {}).uuid
    status = request.live.vms.get(uuid)
    if status is None:
        return []
    owner = status.owner
    if owner is None:
        return [f"{key}: a live VM with its UUID {uuid} exists and is not owned by nebctl; adopt it with nebctl import"]
    if owner.stack != request.stack:
        return [f"{key}: the live VM {uuid} belongs to stack {owner.stack!r}; nebctl never touches another stack's"]
    return []


def _deleting_reason(key: ResourceKey, record: RecordView) -> str:
    owner = deposed_of(key, record.live)
    if owner is not None:
        return f"the old VM of {owner}, deleted once its replacement runs"
    return "finishing an interrupted delete" if record.status == "deleting" else ""


def _added(spec: Mapping[str, Any], sensitive: Sequence[str]) -> AddedFields:
    return AddedFields(spec, sensitive)


def _flat_paths(spec: Mapping[str, Any]) -> list[str]:
    return list(flatten(spec))


def _ignored(document: AnyManifest) -> tuple[str, ...]:
    if isinstance(document, VirtualMachine):
        return tuple(document.spec.lifecycle.ignoreChanges)
    return ()


def _shrinking_disks(key: ResourceKey, fields: Iterable[FieldChange]) -> list[str]:
    problems = []
    for change in fields:
        if change.path.endswith(".size") and change.path.startswith("disks["):
            before, after = change.before, change.after
            if isinstance(before, int) and isinstance(after, int) and after < before:
                problems.append(
                    f"{key}: {change.path} cannot shrink from {format_quantity(before)} to {format_quantity(after)}"
                    " (disks only grow)"
                )
    return problems


# --- what a plan may not do -----------------------------------------------------------------------------------


def _prevents_destroy(spec: Mapping[str, Any] | None) -> bool:
    return bool(spec and spec.get("lifecycle", {}).get("preventDestroy"))


def _check_deletions(
    changes: Sequence[ResourceChange],
    request: PlanRequest,
    own: Mapping[ResourceKey, RecordView],
    problems: list[str],
    specs: Mapping[ResourceKey, Mapping[str, Any]],
) -> None:
    going = {c.key for c in changes if c.type in (ChangeType.DELETE, ChangeType.REPLACE)}
    deleted = {c.key for c in changes if c.type is ChangeType.DELETE}
    for change in changes:
        if change.type not in (ChangeType.DELETE, ChangeType.REPLACE):
            continue
        document = request.documents.get(change.key)
        record = own.get(change.key)
        desired = spec_document(document) if document is not None else None
        if _prevents_destroy(desired) or _prevents_destroy(record.applied if record else None):
            verb = "destroy" if change.type is ChangeType.DELETE else "replace"
            problems.append(f"{change.key}: lifecycle.preventDestroy is set, and this plan would {verb} it")
    # Images still backing the disks of VMs that stay cannot go away; hosts with VMs that stay cannot either.
    # A disk that an update of this plan removes (the VM keeps fewer disks) is deleted before the image.
    updated = {c.key for c in changes if c.type is ChangeType.UPDATE}
    leaving: dict[str, set[ResourceKey]] = defaultdict(set)  # host -> spanned resources this plan removes there
    for change in changes:
        record = own.get(change.key)
        spec = specs.get(change.key)
        if change.type is ChangeType.UPDATE and record is not None and record.applied and spec and "hosts" in spec:
            for host in set(record.applied.get("hosts") or ()) - set(spec["hosts"]):
                leaving[str(host)].add(change.key)
    touched_paths = {c.key: [f.path for f in c.fields] for c in changes if c.type is ChangeType.UPDATE}
    if not going and not leaving:
        return  # nothing goes away anywhere (the usual re-plan): no VM can be left without what it uses
    for key, record in own.items():
        if key.kind is not Kind.VIRTUAL_MACHINE or key in going or record.applied is None:
            continue
        document = request.documents.get(key)
        kept = len(record.applied.get("disks", []))
        if key in updated and isinstance(document, VirtualMachine):
            kept = min(kept, len(document.spec.disks))
        for disk in record.applied.get("disks", [])[:kept]:
            image = disk.get("image")
            image_key = ResourceKey.of(Kind.IMAGE, image, key.namespace) if image else None
            if image_key in going and disk.get("clone", "overlay") == "overlay":
                problems.append(
                    f"{image_key}: cannot be replaced or deleted while {key} uses it as a backing file"
                    " (replace or delete the VM too)"
                )
        # A NIC on a network that goes away must be prepared again (its address moves with a new address plan)
        # or removed by this plan; otherwise the VM would stay attached to a network deleted under it.
        touched = touched_paths.get(key, ())
        for index, nic in enumerate(record.applied.get("nics", [])):
            network_key = ResourceKey.of(Kind.NETWORK, str(nic.get("network")), key.namespace)
            if network_key in going and not any(path.startswith(f"nics[{index}]") for path in touched):
                problems.append(
                    f"{network_key}: cannot be replaced or deleted while {key} is attached to it"
                    f" (nics[{index}]; replace the VM or remove the NIC too)"
                )
        # A datastore, image, network or group that leaves the VM's host (its span shrinks) while the VM stays
        # there, or only migrates in this plan (a migration is not ordered before the removal), and still uses it.
        gone_here = leaving.get(str(record.host))
        still_used = (
            references(key, specs.get(key, record.applied) if key in updated else record.applied) if gone_here else ()
        )
        for used in sorted(set(still_used) & (gone_here or set()), key=_sort_key):
            problems.append(
                f"{used}: cannot leave host {record.host} while {key} uses it there (move or delete the VM first)"
            )
        host_key = ResourceKey.of(Kind.HOST, str(record.host)) if record.host else None
        if host_key in deleted:
            problems.append(f"{host_key}: cannot be removed while {key} runs on it")


def _check_quotas(request: PlanRequest, problems: list[str]) -> None:
    """Totals per namespace once the plan is applied (this stack's desired VMs plus every other stack's
    recorded ones) against the namespace's quota."""
    if not request.quotas:
        return
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])

    def add(namespace: str, vcpu: int, memory: int, disk: int) -> None:
        total = totals[namespace]
        total[0] += 1
        total[1] += vcpu
        total[2] += memory
        total[3] += disk

    for key, document in request.documents.items():
        if isinstance(document, VirtualMachine):
            add(key.namespace, document.spec.vcpu, document.spec.memory, _vm_disk_total(document))
    for key, record in request.records.items():
        if key.kind is Kind.VIRTUAL_MACHINE and record.stack != request.stack and record.applied:
            applied = record.applied
            add(key.namespace, int(applied.get("vcpu", 0)), int(applied.get("memory", 0)), disk_total(applied))
    for quota in request.quotas:
        vms, vcpu, memory, disk = totals.get(quota.namespace, [0, 0, 0, 0])
        for label, used, limit, show in (
            ("VMs", vms, quota.vms, str),
            ("vCPUs", vcpu, quota.vcpu, str),
            ("memory", memory, quota.memory, format_quantity),
            ("disk", disk, quota.disk, format_quantity),
        ):
            if limit is not None and used > limit:
                problems.append(
                    f"namespace {quota.namespace}: quota exceeded: {label} {show(used)} requested, "
                    f"{show(limit)} allowed"
                )


# --- targets ----------------------------------------------------------------------------------------------


def references(key: ResourceKey, spec: Mapping[str, Any] | None) -> set[ResourceKey]:
    """The resources ``key`` refers to in ``spec`` (manifest references, resolved hosts, dependsOn)."""
    if not spec:
        return set()
    ns = key.namespace
    refs: set[ResourceKey] = set()
    if key.kind is Kind.VIRTUAL_MACHINE:
        for disk in spec.get("disks", []):
            if disk.get("image"):
                refs.add(ResourceKey.of(Kind.IMAGE, disk["image"], ns))
            if disk.get("datastore"):
                refs.add(ResourceKey.of(Kind.DATASTORE, disk["datastore"]))
        for nic in spec.get("nics", []):
            refs.add(ResourceKey.of(Kind.NETWORK, nic["network"], ns))
            refs.update(ResourceKey.of(Kind.SECURITY_GROUP, g, ns) for g in nic.get("securityGroups", []))
        host = spec.get("host") or (spec.get("placement") or {}).get("host")
        if host:
            refs.add(ResourceKey.of(Kind.HOST, host))
        for text in spec.get("dependsOn", []):
            try:
                refs.add(ResourceKey.parse(text, namespace=ns))
            except ValueError:
                continue
    elif key.kind is Kind.IMAGE:
        refs.add(ResourceKey.of(Kind.DATASTORE, spec["datastore"]))
        source = spec.get("source")
        if isinstance(source, Mapping):
            refs.add(ResourceKey.of(Kind.MARKETPLACE, str(source["marketplace"]).split("/")[0]))
    if key.kind in (Kind.DATASTORE, Kind.NETWORK, Kind.IMAGE, Kind.SECURITY_GROUP):
        refs.update(ResourceKey.of(Kind.HOST, host) for host in spec.get("hosts", []))
    return refs


def _select(
    changes: list[ResourceChange], request: PlanRequest, own: Mapping[ResourceKey, RecordView]
) -> list[ResourceChange]:
    if not request.targets and not request.excludes:
        return changes
    import networkx as nx  # only for --target/--exclude (about 0.08 s)

    graph: nx.DiGraph[ResourceKey] = nx.DiGraph()
    for key, document in request.documents.items():
        graph.add_node(key)
        for ref in references(key, spec_document(document)):
            graph.add_edge(key, ref)
    for key, record in own.items():
        graph.add_node(key)
        for ref in references(key, record.applied):
            graph.add_edge(key, ref)
    keep = {c.key for c in changes}
    if request.targets:
        wanted: set[ResourceKey] = set()
        for target in request.targets:
            if target in graph:
                wanted |= {target, *nx.descendants(graph, target)}
        keep &= wanted
    for excluded in request.excludes:
        if excluded in graph:
            keep -= {excluded, *nx.ancestors(graph, excluded)}
    # The old VM of a create-first replacement goes with its VM's change (it is deleted once that is done).
    for change in changes:
        kept = own.get(change.key)
        owner = deposed_of(change.key, kept.live) if kept is not None else None
        if owner is not None and owner in keep:
            keep.add(change.key)
    return [c for c in changes if c.key in keep]


# --- the action graph -------------------------------------------------------------------------------------


def _phase(change: ResourceChange, action: Action) -> str:
    if change.type is ChangeType.DELETE:
        return "destroy"
    if change.type is ChangeType.REPLACE and action.operation in _DESTROY_OPERATIONS and ":new:" not in action.id:
        return "destroy"
    # An update first releases what it stops using (the shutdown, a NIC cleaned, a disk deleted, a host left):
    # that part must finish before a resource it used is destroyed, while the rest may need that resource built
    # again (a network replaced under a VM whose address changes). One phase for both would be a cycle.
    if change.type is ChangeType.UPDATE and action.operation in _RELEASE_OPERATIONS:
        return "destroy"
    return "build"


def _ends(group: ActionGroup, ids: set[str], *, first: bool) -> list[Action]:
    """Entry (``first``) or exit actions among ``ids`` of a group, by the group's own edges."""
    inside = [(a, b) for a, b in group.edges if a in ids and b in ids]
    blocked = {b for _, b in inside} if first else {a for a, _ in inside}
    return [action for action in group.actions if action.id in ids and action.id not in blocked]


def _action_graph(
    changes: Sequence[ResourceChange],
    ctx: PlanningContext,
    request: PlanRequest,
    specs: Mapping[ResourceKey, Mapping[str, Any]],
) -> tuple[list[Action], Edges]:
    actions: list[Action] = []
    edges = _EdgeLists()
    # An edge is listed once, where it first comes. Deduplicating the whole list at the end held a dictionary
    # of every edge (two million in a full plan of 100,000 VMs) on top of everything else; instead each source
    # of edges that can repeat itself is deduplicated on its own. The others cannot repeat: a group's edges are
    # between actions of its own resource; an edge between two resources comes from their pair alone (each
    # reference is linked once per direction, build exits to build entries or exits to destroy entries, and an
    # action is in one phase). A resource that refers to itself, or a group holding another resource's
    # action, breaks that reasoning: then the whole list is deduplicated, as before.
    whole_list = False
    # Per resource and phase: its entry and exit actions, for the edges between resources.
    entries: dict[tuple[ResourceKey, str], _Ends] = {}
    exits: dict[tuple[ResourceKey, str], _Ends] = {}
    for change in changes:
        if not change.is_change:
            continue
        group = RECONCILERS[change.key.kind].actions(change, ctx)
        actions.extend(group.actions)
        edges.extend(_deduplicated(group.edges))
        whole_list = whole_list or any(action.key != change.key for action in group.actions)
        for phase in ("build", "destroy"):
            ids = {a.id for a in group.actions if _phase(change, a) == phase}
            if ids:
                entries[(change.key, phase)] = _Ends(_ends(group, ids, first=True))
                exits[(change.key, phase)] = _Ends(_ends(group, ids, first=False))
    changed = {c.key: c for c in changes if c.is_change}
    for change in changed.values():
        key = change.key
        document = request.documents.get(key)
        record = ctx.records.get(key)
        # The spec resolved by _changes (computing it again costs a model dump per resource).
        desired = specs.get(key) if document is not None else None
        needed = references(key, desired)
        applied = references(key, record.applied if record is not None else None)
        whole_list = whole_list or key in needed or key in applied
        # Build after what it needs is built: on the same host where the dependency is a per-host one, else
        # wherever each of them is (see ``_per_host``).
        for ref in sorted(needed, key=_sort_key):
            if (ref, "build") in exits and (key, "build") in entries:
                edges.extend(_linked(exits[(ref, "build")], entries[(key, "build")], by_host=_per_host(ref)))
        # Anything that used a resource in its last applied spec stops using it before that resource is
        # destroyed: its own destroy phase does that. Without one (an update that only builds), all of it goes
        # first, unless it needs the resource built again (then waiting for the destroy would be a cycle).
        # The old VM of a create-first replacement goes once its replacement is built, and that may wait for
        # a resource it uses being restarted (its release, then its build): it need not go before that
        # release too (a cycle), only before a resource it used is deleted.
        deposed = record is not None and deposed_of(key, record.live) is not None
        for ref in sorted(applied, key=_sort_key):
            if (ref, "destroy") not in entries:
                continue
            if deposed and changed[ref].type is not ChangeType.DELETE:
                continue
            by_host = _per_host(ref)
            if (key, "destroy") in exits:
                edges.extend(_linked(exits[(key, "destroy")], entries[(ref, "destroy")], by_host=by_host))
            elif (key, "build") in exits and ref not in needed:
                edges.extend(_linked(exits[(key, "build")], entries[(ref, "destroy")], by_host=by_host))
    edges.extend(_deduplicated(_reused_addresses(changed, ctx, specs, entries, exits)))
    edges.extend(_deposed_after_replacements(changed, ctx, entries, exits))
    return actions, edges.done(deduplicate=whole_list)


def _per_host(ref: ResourceKey) -> bool:
    """Whether what depends on ``ref`` needs only ``ref``'s actions on its own host: a host, or a resource that
    lives on many hosts (a datastore, an image, a network, a security group) with an action per host, of which
    a VM on one host uses only that host's part. Anything else (a VM a ``dependsOn`` names, say) is one thing,
    wherever it is: every action of it orders every action of its dependents, on every host."""
    return ref.kind is Kind.HOST or isinstance(RECONCILERS[ref.kind], SpannedReconciler)


def _deposed_after_replacements(
    changed: Mapping[ResourceKey, ResourceChange],
    ctx: PlanningContext,
    entries: Mapping[tuple[ResourceKey, str], _Ends],
    exits: Mapping[tuple[ResourceKey, str], _Ends],
) -> list[tuple[str, str]]:
    """The old VM of a create-first replacement is deleted only once its replacement is built, on whatever
    host each of them is (the pairs are not matched by host)."""
    edges: list[tuple[str, str]] = []
    for key in changed:
        record = ctx.records.get(key)
        owner = deposed_of(key, record.live) if record is not None else None
        if owner is None or (owner, "build") not in exits or (key, "destroy") not in entries:
            continue
        edges += [(a.id, b.id) for a in exits[(owner, "build")].actions for b in entries[(key, "destroy")].actions]
    return edges


def _reused_addresses(
    changed: Mapping[ResourceKey, ResourceChange],
    ctx: PlanningContext,
    specs: Mapping[ResourceKey, Mapping[str, Any]],
    entries: Mapping[tuple[ResourceKey, str], _Ends],
    exits: Mapping[tuple[ResourceKey, str], _Ends],
) -> list[tuple[str, str]]:
    """An address that a VM of this plan releases (deleted, replaced, or its NIC removed) may be leased to
    another VM of the same plan: that VM's NICs are prepared only once the address is released, on whatever
    host, or the network still holds the old lease."""
    released: dict[tuple[str, str, str], ResourceKey] = {}
    for key in changed:
        record = ctx.records.get(key)
        if key.kind is not Kind.VIRTUAL_MACHINE or (key, "destroy") not in exits or record is None:
            continue
        for nic in (record.applied or {}).get("nics", []):
            if nic.get("ip"):
                released[(key.namespace, str(nic["network"]), str(nic["ip"]))] = key
    edges: list[tuple[str, str]] = []
    if not released:
        return edges
    for key in changed:
        spec = specs.get(key)
        if key.kind is not Kind.VIRTUAL_MACHINE or spec is None or (key, "build") not in entries:
            continue
        for nic in spec.get("nics", []):
            holder = released.get((key.namespace, str(nic["network"]), str(nic.get("ip"))))
            if holder is not None and holder != key:
                edges.extend(
                    (a.id, b.id) for a in exits[(holder, "destroy")].actions for b in entries[(key, "build")].actions
                )
    return edges


class _Ends:
    """The entry or exit actions of one resource's phase, indexed by host: a resource that lives on every host
    has an action per host, and linking it to each VM by scanning them all would be quadratic. The index is
    built on first use, and only for more than a few actions (a VM has a handful, and there are many VMs)."""

    __slots__ = ("_by_host", "actions")

    def __init__(self, actions: Sequence[Action]) -> None:
        self.actions = actions
        self._by_host: dict[str | None, list[int]] | None = None

    def matching(self, host: str | None) -> Iterable[int]:
        """Indices of the actions that pair with an action on ``host``: the same host, or either has none (in no
        particular order: ``_linked`` sorts the pairs)."""
        if host is None:
            return range(len(self.actions))
        if len(self.actions) <= _SCANNED:
            return [index for index, action in enumerate(self.actions) if action.host in (host, None)]
        if self._by_host is None:
            self._by_host = defaultdict(list)
            for index, action in enumerate(self.actions):
                self._by_host[action.host].append(index)
        return [*self._by_host.get(host, ()), *self._by_host.get(None, ())]


_SCANNED = 8  # at most this many actions are scanned rather than indexed


def _linked(before: _Ends, after: _Ends, *, by_host: bool = True) -> list[tuple[str, str]]:
    """Every (a, b) of ``before`` x ``after`` on the same host (or where either has no host; on any host when
    not ``by_host``), in the order of ``before`` then ``after``; the smaller side is iterated and the other
    looked up by host."""
    if not by_host:
        return [(a.id, b.id) for a in before.actions for b in after.actions]
    pairs: list[tuple[int, int]] = []
    if len(after.actions) <= len(before.actions):
        for ib, b in enumerate(after.actions):
            pairs.extend((ia, ib) for ia in before.matching(b.host))
    else:
        for ia, a in enumerate(before.actions):
            pairs.extend((ia, ib) for ib in after.matching(a.host))
    pairs.sort()
    return [(before.actions[ia].id, after.actions[ib].id) for ia, ib in pairs]


def _deduplicated(edges: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(edges))


class _EdgeLists:
    """The plan's edges in the order they are found, as two lists of action ids (see ``plans.Edges``)."""

    __slots__ = ("after", "before")

    def __init__(self) -> None:
        self.before: list[str] = []
        self.after: list[str] = []

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        before, after = self.before.append, self.after.append
        for first, then in pairs:
            before(first)
            after(then)

    def done(self, *, deduplicate: bool) -> Edges:
        edges = Edges.of(self.before, self.after)
        return Edges(_deduplicated(edges)) if deduplicate else edges


_KIND_RANK = {kind: rank for rank, kind in enumerate(KIND_ORDER)}


def _sort_key(key: ResourceKey) -> tuple[int, str, str]:
    return (_KIND_RANK[key.kind], key.namespace, key.name)


# --- fingerprint --------------------------------------------------------------------------------------------


def fingerprint(request: PlanRequest) -> str:
    """A digest of everything the plan depends on: a saved plan is refused when this has moved."""
    digest = hashlib.sha256()
    digest.update(request.stack.encode())
    for key in sorted(request.documents, key=_sort_key):
        digest.update(str(key).encode())
        document = request.documents[key]
        digest.update(_canonical(with_metadata(spec_document(document), document)))
    for key in sorted(request.records, key=_sort_key):
        record = request.records[key]
        digest.update(str(key).encode())
        digest.update(_canonical({"stack": record.stack, "applied": record.applied, "status": record.status}))
    vm_hosts = request.live.vm_hosts
    for uuid, status in sorted(request.live.vms.items()):
        digest.update(_canonical([uuid, status.state.value, status.vcpu, status.memory, vm_hosts.get(uuid)]))
    for name, probe in sorted(request.live.hosts.items()):
        digest.update(_canonical([name, probe.state.value]))
    digest.update(_canonical([sorted(map(str, request.targets)), sorted(map(str, request.excludes)), request.prune]))
    return digest.hexdigest()


# One encoder for every value: ``json.dumps`` with these options builds a new one per call, which a plan of
# 100,000 resources pays hundreds of thousands of times. The output is the same.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _canonical(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()
