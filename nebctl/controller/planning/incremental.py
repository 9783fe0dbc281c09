"""Planning again after a small change, for a planner that lives on (the service): what the last plan found is
kept (a ``PlanTrace``), and the next plan redoes only the resources whose own inputs moved, when it can show that
nothing the whole installation shares moved with them.

A plan has two kinds of steps. The installation-wide ones (placement, addresses and MACs, disk datastores, the
incarnations) read every VM's manifest and record; the per-resource ones (the desired spec, drift, the comparison)
read one resource's manifest, record and live state, and what the installation-wide steps settled for it. The
per-resource results of the last plan still hold for every resource whose manifest and record are the same objects
as then (the manifest cache and the records cache hand out unchanged ones again) and whose live state is as
planning read it then (a VM's state, size, owner and host; not its usage figures), when the options are equal.

The installation-wide results still hold when, besides, every resource that did change is of a kind whose
reconciler says what those steps read of it (``Reconciler.shared_inputs``, ``shared_record_inputs``), and that
stayed equal: a label, an annotation, cloud-init data, a state change of a VM. When only what placement reads moved
(a VM's size or placement rules, its recorded host, a host's probed capacity), every VM is placed again, and the
rest is kept if every VM gets the host it had. A host's usage figures (CPU usage, load, free memory and disk),
which move with every probe, count only when the last plan placed some VM away from the host its record names, or
some VM's requirements read them: a VM that stays where it is reads none of them. Anything else means planning
everything: a VM placed elsewhere, a new NIC, a new VM, a host or network edited, another stack's record moved, a
host that stops or starts answering, a host's objects listed differently, or more than a quarter of the resources
changed (a whole plan then costs about as much; up to a hundred are planned again in any case). Resources that
had drift are planned again too: whether their repair is refused reads the records of the VMs that hold their
objects (``repairs``).

The checks across resources (deletions, quotas, targets) and the action graph always run over the whole plan.

A trace can also be kept between processes (``kept_trace``, for the CLI: ``controller.kept_traces``). It then holds no
request: in its place, a stamp of each manifest (what the manifest cache names the text it comes from) with what
the installation-wide steps read of it, what those steps read of each record, the options, and what planning read
of the live view (``Seen``). Whoever hands such a trace back vouches for the records: they are those it was made
from, but for the ones it names as moved (``with_moved_records``: an apply wrote them, say). A manifest then counts
as changed when its stamp did, a moved record as a record that is not the object it was, and the live view is
compared as above, unless it is the very view the trace was made from (``LiveView.identity``: a kept
observation). The resources the caller left out of it (``unkept``: their plans hold secrets) are planned again
each time.

Pure: values in, values out; tests/unit/planning/test_incremental_plans.py compares it with the whole plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nebctl.controller.placement import documents_read_usage
from nebctl.controller.planning.changes import Outcome
from nebctl.controller.planning.request import PlanRequest
from nebctl.core.deferred import Deferred, DeferredChunks
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.overlay import Overlay
from nebctl.core.plans import ChangeType, ResourceChange
from nebctl.drivers.types import HostProbe, VMStatus
from nebctl.reconcilers.base import LiveView, RecordView, Resolution, SharedInputs
from nebctl.reconcilers.identity import VMIdentity

# More changed resources than this share of the manifests (and than ``FEW``): the whole plan is made.
MOST_REPLANNED = 0.25
FEW = 100  # planned again in any case: a few milliseconds, less than a whole plan of any larger stack

Item = TypeVar("Item")


@dataclass(frozen=True)
class Shared:
    """What a plan's installation-wide steps settled: the hosts of the manifests, the spans of multi-host
    resources, each VM's host (with its instance type and the note the plan prints beside it), each VM's
    incarnation, and each kind's resolution (addresses, MACs, disk datastores)."""

    hosts: list[str]
    spans: Mapping[ResourceKey, tuple[str, ...]]
    placements: Mapping[ResourceKey, str]
    instance_types: Mapping[ResourceKey, str]
    notes: Mapping[ResourceKey, str]
    incarnations: Mapping[ResourceKey, int]
    resolution: Resolution
    # Whether every VM stayed on the host its record names (placement's first step kept it there): where each
    # goes then reads no host's usage figures, unless some VM's requirements read them (``_seen_again``).
    stayed: bool = False


@dataclass(frozen=True)
class Stamped:
    """What a trace kept between processes has instead of its request: the options, each manifest's stamp and what
    the installation-wide steps read of it (``Reconciler.shared_inputs``), the resources whose results were not
    kept (they are planned again) and what planning read of the live view."""

    options: tuple[object, ...]
    stamps: Mapping[ResourceKey, str]
    inputs: Mapping[ResourceKey, SharedInputs | None]
    unkept: frozenset[ResourceKey]
    seen: Deferred[Seen]  # what planning read of the live view (built only when compared)
    records: Mapping[ResourceKey, SharedInputs]  # what the installation-wide steps read of each record that says
    # The records that are not those the trace was made from, as whoever hands it back found them (they are
    # compared like the records of an edit); empty as kept.
    moved: frozenset[ResourceKey] = frozenset()
    # The identity of the live view the plan read (``LiveView.identity``): a plan that reads the very same view
    # (a kept observation) need not compare what it reads of it.
    observation: bytes | None = None


@dataclass(frozen=True)
class PlanTrace:
    """What a plan was made from and found, for the next plan to redo only what moved (``replanned``). A trace kept
    between processes has no ``request`` but ``stamped``."""

    request: PlanRequest | None
    shared: Shared
    outcomes: Mapping[ResourceKey, Outcome]  # every resource's, in the plan's order, before selection
    specs: Mapping[ResourceKey, dict[str, Any]]  # the resolved spec of each resource of the manifests
    observed: Mapping[ResourceKey, Mapping[str, Any]]  # ``PlanningContext.observed``
    changed: Mapping[ResourceKey, tuple[str, ...]]  # ``PlanningContext.changed``
    # How many resources this plan planned again from the last trace (and whether it placed every VM again); None
    # when it was made whole. For the logs.
    replanned: Replan | None = None
    stamped: Stamped | None = None


def without(base: Mapping[ResourceKey, Item], keys: Collection[ResourceKey]) -> MutableMapping[ResourceKey, Item]:
    """``base`` without ``keys``, to write in: a copy of a dict (the service's trace, in memory), an ``Overlay``
    (``core.overlay``) of anything else (a kept trace's, whose values are read only where asked)."""
    if isinstance(base, dict):
        copy = dict(base)
        for key in keys:
            copy.pop(key, None)
        return copy
    return Overlay(base, keys)


@dataclass(frozen=True)
class Replan:
    """What a plan made from a trace redoes: the resources planned again, and whether every VM is placed again
    (something placement reads moved); the placement must then come out as before, or the whole plan is made."""

    keys: frozenset[ResourceKey]
    placing: bool = False
    # A kept trace's: no resource is planned again for its live state (at most the hosts' probes moved, and then
    # every VM was placed as before). The trace's results then hold for this plan's live view, and the trace may
    # take what it reads of that view (``KeptTraces.advance``), so that the next plan on it compares nothing.
    view_holds: bool = False
    # What planning read of this plan's live view, where it told it (comparing it with a kept trace's): the trace
    # takes it with the view (``KeptTraces.advance``) without reading the view again.
    seen: Seen | None = field(default=None, compare=False, repr=False)


def replanned(
    previous: PlanTrace, request: PlanRequest, stamps: Mapping[ResourceKey, str] | None = None
) -> Replan | None:
    """What to redo when everything else of ``request`` is as ``previous`` found it; None when the whole plan must
    be made (the module's rules). ``stamps`` are the manifests' (``ManifestSet.stamps``), for a kept trace."""
    before = previous.request
    view_holds = False
    now: Seen | None = None
    if before is None:
        restamped = _restamped(previous, request, stamps)
        if restamped is None:
            return None
        placing, again, view_holds, now = restamped
    else:
        found = _reused(before, request, previous.shared.stayed)
        if found is None:
            return None
        placing, again = found
    if _many(len(again), len(request.documents)):
        return None
    for key, (change, drift, _) in previous.outcomes.items():
        if drift or (change is not None and change.drift):
            again.add(key)  # how its drift is repaired reads the records of the VMs that hold its objects
    return Replan(frozenset(again), placing, view_holds=view_holds, seen=now)


def kept_trace(trace: PlanTrace, stamps: Mapping[ResourceKey, str], unkept: frozenset[ResourceKey]) -> PlanTrace | None:
    """``trace`` as kept between processes: no request, the manifests' ``stamps`` instead, and nothing of the
    resources of ``unkept`` (the caller's: those whose plans hold secrets). None when a manifest has no stamp."""
    request = trace.request
    if request is None or stamps.keys() != request.documents.keys():
        return None
    reconcilers = request.reconcilers
    inputs = {key: reconcilers[key.kind].shared_inputs(document) for key, document in request.documents.items()}
    # Only where the steps say what they read (a VM of the manifests): a moved record of any other is read as
    # having moved everything, which plans everything, as it would have without an entry.
    records = {
        key: read
        for key, record in request.records.items()
        if (read := _record_inputs(request, key, record)) is not None
    }
    # A placeholder keeps each resource's place in the plan's order; it is planned again (``_restamped``).
    nothing: Outcome = (None, (), None)
    return PlanTrace(
        request=None,
        shared=trace.shared,
        outcomes={key: nothing if key in unkept else outcome for key, outcome in trace.outcomes.items()},
        specs={key: spec for key, spec in trace.specs.items() if key not in unkept},
        observed=_observed(trace, unkept),
        changed={key: value for key, value in trace.changed.items() if key not in unkept},
        stamped=Stamped(
            _options(request),
            dict(stamps),
            inputs,
            unkept,
            Deferred(seen(request.live, by_host=True)),
            records,
            observation=request.live.identity,
        ),
    )


def with_moved_records(trace: PlanTrace, moved: frozenset[ResourceKey]) -> PlanTrace:
    """``trace``, kept between processes, for records of which those of ``moved`` are not the ones it was made
    from (the others are); ``trace`` itself when there are none or it was not kept."""
    if not moved or trace.stamped is None:
        return trace
    return dataclasses.replace(trace, stamped=dataclasses.replace(trace.stamped, moved=moved))


def whole_after(changes: Sequence[ResourceChange], documents: int) -> bool:
    """Whether the plan made once ``changes`` are applied will be made whole: they create or delete records (the
    records' keys move), or change more resources than a plan made from a trace redoes (of ``documents``)."""
    acted = [change for change in changes if change.is_change]
    if _many(len(acted), documents):
        return True
    return any(change.type in (ChangeType.CREATE, ChangeType.DELETE, ChangeType.REPLACE) for change in acted)


def _reused(before: PlanRequest, request: PlanRequest, stayed: bool) -> tuple[bool, set[ResourceKey]] | None:
    """For the last plan's own request (``stayed``: its ``Shared.stayed``): whether what placement reads moved, and
    the resources to plan again: those whose manifest or record is not the object it was, and whose live state
    moved."""
    if (
        request.reconcilers is not before.reconcilers
        or _options(request) != _options(before)
        or request.documents.keys() != before.documents.keys()
        or request.records.keys() != before.records.keys()
    ):
        return None
    same = request.live is before.live
    live = (False, set()) if same else _seen_again(seen(before.live), seen(request.live), request, stayed)
    if live is None:
        return None
    edited = _edited(before, request)
    if edited is None:
        return None
    return live[0] or edited[0], live[1] | edited[1]


def _edited(before: PlanRequest, request: PlanRequest) -> tuple[bool, set[ResourceKey]] | None:
    """Whether what placement reads of the manifests and records moved, and the resources whose manifest or record
    is not the object it was; None when something else they share moved."""
    reconcilers = request.reconcilers
    documents, old_documents = request.documents, before.documents
    found = _changed(
        documents,
        lambda key: documents[key] is old_documents[key],
        lambda key: reconcilers[key.kind].shared_inputs(documents[key]),
        lambda key: reconcilers[key.kind].shared_inputs(old_documents[key]),
    )
    if found is None:
        return None
    records, old_records = request.records, before.records
    moved = _changed(
        records,
        lambda key: records[key] is old_records[key],
        lambda key: _record_inputs(request, key, records[key]),
        lambda key: _record_inputs(request, key, old_records[key]),
    )
    if moved is None:
        return None
    return found[0] or moved[0], found[1] | moved[1]


def _record_inputs(request: PlanRequest, key: ResourceKey, record: RecordView) -> SharedInputs | None:
    """What the installation-wide steps read of ``record``. A record outside the manifests counts in those steps
    (another stack's VM): None, plan everything."""
    return request.reconcilers[key.kind].shared_record_inputs(record) if key in request.documents else None


def _observed(trace: PlanTrace, unkept: frozenset[ResourceKey]) -> dict[ResourceKey, Mapping[str, Any]]:
    """The trace's ``observed`` without ``unkept``; a resource observed as its spec resolves shares that value,
    which a pickle then writes once (the most part, and half the size of a large trace)."""
    specs = trace.specs
    found: dict[ResourceKey, Mapping[str, Any]] = {}
    for key, value in trace.observed.items():
        if key not in unkept:
            spec = specs.get(key)
            found[key] = spec if spec is not None and spec == value else value
    return found


def _restamped(
    previous: PlanTrace, request: PlanRequest, stamps: Mapping[ResourceKey, str] | None
) -> tuple[bool, set[ResourceKey], bool, Seen | None] | None:
    """For a kept trace (its records vouched for): whether what placement reads moved, the resources to plan
    again (those whose manifest's stamp moved, whose record moved, whose live state moved, and whose results were
    not kept), whether none of them is planned again for its live state (``Replan.view_holds``), and what
    planning reads of the request's live view, when it was read to compare (``Replan.seen``)."""
    kept_as = previous.stamped
    if kept_as is None or stamps is None or stamps.keys() != kept_as.stamps.keys():
        return None
    if request.documents.keys() != stamps.keys() or _options(request) != kept_as.options:
        return None
    records = request.records
    rewritten = _changed(
        kept_as.moved,
        lambda key: False,
        lambda key: _record_inputs(request, key, records[key]) if key in records else None,
        kept_as.records.get,
    )
    if rewritten is None:
        return None
    live: tuple[bool, set[ResourceKey]] | None = (False, set())
    now: Seen | None = None
    if kept_as.observation is None or request.live.identity != kept_as.observation:
        before, stayed = kept_as.seen.get(), previous.shared.stayed
        # A view made from the trace's by probing a few hosts again (an apply moved them): only those are compared.
        within = request.live.hosts_probed_since(kept_as.observation)
        now = seen_since(request.live, before, within) if within is not None else None
        if now is not None:
            live = _seen_again(before, now, request, stayed, within)
        else:
            now = seen(request.live, by_host=True)  # the trace's state may take it (``Replan.seen``)
            live = _seen_again(before, now, request, stayed) if now != before else (False, set())
    if live is None:
        return None
    reconcilers, documents, old = request.reconcilers, request.documents, kept_as.stamps
    found = _changed(
        stamps,
        lambda key: stamps[key] == old[key],
        lambda key: reconcilers[key.kind].shared_inputs(documents[key]),
        kept_as.inputs.__getitem__,
    )
    if found is None:
        return None
    placing = live[0] or found[0] or rewritten[0]
    return placing, live[1] | found[1] | rewritten[1] | kept_as.unkept, not live[1], now


def _changed(
    keys: Iterable[ResourceKey],
    same: Callable[[ResourceKey], bool],
    now: Callable[[ResourceKey], SharedInputs | None],
    before: Callable[[ResourceKey], SharedInputs | None],
) -> tuple[bool, set[ResourceKey]] | None:
    """The ``keys`` that are not the ``same`` as before, and whether what placement reads of them (``now``,
    ``before``) moved; None when anything else they share moved, or a kind does not say what it shares."""
    again: set[ResourceKey] = set()
    placing = False
    for key in keys:
        if same(key):
            continue
        moved = _moved(now(key), before(key))
        if moved is None:
            return None
        placing = placing or moved
        again.add(key)
    return placing, again


@dataclass(frozen=True)
class Seen:
    """What planning reads of a live view (``seen``): every host's probe, the objects listed on each host and their
    fingerprints, and each VM's state, size, owner and host by uuid (not its usage figures, which move with every
    probe, nor the spec its ownership carries, which only recovery reads)."""

    hosts: Mapping[str, HostProbe]
    objects: Mapping[str, frozenset[tuple[str, str]]]
    fingerprints: Mapping[str, Mapping[tuple[str, str], Mapping[str, str]]]
    vms: Mapping[str, tuple[object, ...]]


def seen(live: LiveView, *, by_host: bool = False) -> Seen:
    """What planning reads of ``live`` (``Seen``). ``by_host``, for one that a kept trace keeps: its VMs in chunks by
    host (``core.deferred.DeferredChunks``), so that a view made from it by probing a few hosts again is compared,
    and kept, by those hosts' chunks (``seen_since``). Compared in memory and dropped (the service's), a plain
    mapping compares three times faster."""
    where = live.vm_hosts
    vms = {uuid: (*_planned(status), where.get(uuid)) for uuid, status in live.vms.items()}
    return Seen(live.hosts, live.objects, live.fingerprints, DeferredChunks(vms, where.get) if by_host else vms)


def seen_since(live: LiveView, before: Seen, hosts: Collection[str]) -> Seen | None:
    """What planning reads of ``live``, a view made from the one ``before`` was read of by probing ``hosts`` again
    (``LiveView.hosts_probed_since``): the VMs of those hosts are read from ``live``, the other hosts' chunks are
    ``before``'s, shared unread. None when ``before``'s VMs are not in chunks."""
    if not isinstance(before.vms, DeferredChunks):
        return None
    fresh = {uuid: (*_planned(status), host) for uuid, (status, host) in _vms_on(live, hosts).items()}
    vms = before.vms.replaced(hosts, fresh, lambda uuid: fresh[uuid][-1])
    return Seen(live.hosts, live.objects, live.fingerprints, vms)


def _vms_on(live: LiveView, hosts: Collection[str]) -> dict[str, tuple[VMStatus, str]]:
    """Each VM of ``live`` on one of ``hosts``, with its host: built from those hosts' chunks alone where the view
    keeps its VMs in chunks by host."""
    if isinstance(live.vms, DeferredChunks):
        return {uuid: (status, host) for host in hosts for uuid, status in live.vms.chunk(host).items()}
    where = live.vm_hosts
    return {uuid: (status, where[uuid]) for uuid, status in live.vms.items() if where.get(uuid) in hosts}


def _seen_again(
    before: Seen, now: Seen, request: PlanRequest, stayed: bool, within: Collection[str] | None = None
) -> tuple[bool, set[ResourceKey]] | None:
    """What moved between two observations, as planning reads them: whether a host's probe moved as placement reads
    it (every VM is then placed again; ``stayed`` is the last plan's ``Shared.stayed``) and the VMs of the manifests
    whose live state, size, owner or host moved (planned again). None when a host started or stopped answering, or
    a host's listing of objects moved: planning everything. With ``within``, ``now`` is ``before`` with the hosts of
    ``within`` read again (``seen_since``): only their VMs are compared."""
    placing = False
    if now.hosts != before.hosts:
        if now.hosts.keys() != before.hosts.keys() or any(
            probe.state is not before.hosts[name].state for name, probe in now.hosts.items()
        ):
            return None
        # Usage figures move with every probe; a VM that stays where it is does not read them (its requirements
        # aside): while every VM stayed, a probe whose other figures are as they were places none elsewhere.
        placing = (
            not stayed
            or documents_read_usage(request.documents)
            or any(_read_by_staying(probe) != _read_by_staying(before.hosts[name]) for name, probe in now.hosts.items())
        )
    if now.objects != before.objects or now.fingerprints != before.fingerprints:
        return None
    moved = _moved_vms(before.vms, now.vms, within)
    if not moved:
        return placing, set()
    own = request.records
    found = set()
    for key in request.documents:
        if key.kind is Kind.VIRTUAL_MACHINE:
            record = own.get(key)
            live = record.live if record is not None and record.stack == request.stack else {}
            if VMIdentity.recorded(key, live).uuid in moved:
                found.add(key)
    return placing, found


def _moved_vms(
    before: Mapping[str, tuple[object, ...]], now: Mapping[str, tuple[object, ...]], within: Collection[str] | None
) -> set[str]:
    """The VMs whose state, size, owner or host moved from ``before`` to ``now``: of the chunks of the hosts of
    ``within`` only, when given (the other chunks are shared, the same)."""
    uuids: Collection[str]
    if within is not None and isinstance(before, DeferredChunks) and isinstance(now, DeferredChunks):
        uuids = {uuid for host in within for uuid in (*before.chunk(host), *now.chunk(host))}
    else:
        uuids = now.keys() | before.keys()
    return {uuid for uuid in uuids if now.get(uuid) != before.get(uuid)}


def _read_by_staying(probe: HostProbe) -> tuple[object, ...]:
    """What placing a VM that stays on this host reads of its probe (``placement.place``'s first step): its size
    and custom attributes, for the VM's room and requirements, and whether its free disk is below nothing (a VM
    that stays is charged no disk). Not its usage figures (CPU usage, load, free memory, free disk), which move
    with the clock, and which only the rank of hosts for a VM placed anew reads, with requirements that name
    them (``placement.requirements_read_usage``)."""
    return (probe.cpus, probe.memory, probe.custom, probe.error, probe.disk_total > 0 and probe.disk_free < 0)


def _planned(status: VMStatus) -> tuple[object, ...]:
    """What planning reads of a VM's live status (``VirtualMachineReconciler.detect_drift``, and the owner of a
    VM about to be created): not its usage figures, which move with every probe; its owner as compared (the spec
    it carries aside)."""
    owner = status.owner
    who = (
        None
        if owner is None
        else (owner.stack, owner.kind, owner.namespace, owner.name, owner.incarnation, owner.installation)
    )
    return (status.state, status.vcpu, status.memory, who)


def _many(count: int, documents: int) -> bool:
    """Whether ``count`` resources of a stack of ``documents`` are more than a plan made from a trace redoes."""
    return count > max(FEW, MOST_REPLANNED * documents)


def _moved(now: SharedInputs | None, before: SharedInputs | None) -> bool | None:
    """Whether what placement reads moved (False: nothing shared moved); None when something else shared did, or
    the kind does not say what it shares."""
    if now is None or before is None or now.resolving != before.resolving:
        return None
    return now.placing != before.placing


def _options(request: PlanRequest) -> tuple[object, ...]:
    return (
        request.stack,
        request.prune,
        request.targets,
        request.excludes,
        tuple(request.quotas),
        tuple(request.group_quotas),
        request.mac_bits,
    )
