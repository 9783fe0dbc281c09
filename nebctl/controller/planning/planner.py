"""The planner's steps in order, from a ``PlanRequest`` to a ``Plan`` (see the package's docstring)."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from nebctl.controller.planning.changes import resource_changes
from nebctl.controller.planning.fingerprint import fingerprint
from nebctl.controller.planning.graph import action_graph
from nebctl.controller.planning.guards import check_deletions, check_quotas
from nebctl.controller.planning.incremental import PlanTrace, Replan, Shared, replanned, without
from nebctl.controller.planning.placing import place_vms
from nebctl.controller.planning.replacement import (
    check_created_first,
    check_created_first_order,
    created_first,
    incarnations_of,
    with_deposed,
)
from nebctl.controller.planning.request import PlanError, PlanRequest, own_records, sort_key
from nebctl.controller.planning.resolve import spans_of
from nebctl.controller.planning.selection import select
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import ChangeType, Plan
from nebctl.drivers.states import HostLiveState
from nebctl.reconcilers.base import PlanningContext, RecordView, Resolution


def make_plan(request: PlanRequest) -> Plan:
    """The plan for ``request``; raises ``PlanError`` with every problem found."""
    return plan_with_specs(request)[0]


def plan_with_specs(request: PlanRequest) -> tuple[Plan, Mapping[ResourceKey, dict[str, Any]]]:
    """The plan, and the resolved spec of every resource the manifests declare (host, leases, datastores and
    spans filled in): what each record's ``applied`` becomes once its actions succeed. The specs hold secrets
    in clear, which is why they travel beside the plan and never inside it."""
    plan, specs, _ = plan_again(request, None)
    return plan, specs


def plan_again(
    request: PlanRequest, previous: PlanTrace | None, stamps: Mapping[ResourceKey, str] | None = None
) -> tuple[Plan, Mapping[ResourceKey, dict[str, Any]], PlanTrace | None]:
    """``plan_with_specs``, redoing only what moved since ``previous`` (the trace of the last plan of a planner
    that lives on, or one kept between processes, ``incremental``), and the trace of this plan for the next (None
    when it replaced VMs create-first: the next plan is made whole). ``stamps`` are the manifests' stamps, which a
    kept trace is compared with."""
    with _collector_paused():
        return _plan_with_specs(request, previous=previous, stamps=stamps)


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


def hosts_in_error(request: PlanRequest) -> list[str]:
    """A line per host of the manifests whose probe failed, with why (a driver that cannot be loaded, a host
    that does not answer): put before a failed plan's problems, which are often their consequence (a VM that
    fits on no host)."""
    found = []
    for key in request.documents:
        if key.kind is Kind.HOST:
            probe = request.live.hosts.get(key.name)
            if probe is not None and probe.state is HostLiveState.ERROR:
                found.append(f"host {key.name}: {probe.error or 'does not answer'}")
    return sorted(found)


def _plan_with_specs(
    original: PlanRequest,
    deposing: frozenset[ResourceKey] = frozenset(),
    refused: frozenset[ResourceKey] = frozenset(),
    previous: PlanTrace | None = None,
    stamps: Mapping[ResourceKey, str] | None = None,
) -> tuple[Plan, Mapping[ResourceKey, dict[str, Any]], PlanTrace | None]:
    """The plan, with the VMs of ``deposing`` replaced create-first (their old VMs deposed); ``refused`` are
    VMs that asked for it but turned out not to be replaced once planned so (they are not asked again)."""
    request = with_deposed(original, deposing)
    problems: list[str] = []
    own = own_records(request.records, request.stack)
    foreign = [key for key in request.documents if key in request.records and key not in own]
    for key in sorted(foreign, key=sort_key):  # only the few found are sorted, not every document
        other = request.records[key]
        problems.append(f"{key}: belongs to stack {other.stack!r}; nebctl never touches another stack's objects")
    details: list[str] = []
    replan = replanned(previous, request, stamps) if previous is not None and not deposing else None
    shared = _shared_again(request, own, previous, replan) if previous is not None and replan is not None else None
    redone = replan if shared is not None else None
    specs: MutableMapping[ResourceKey, dict[str, Any]]  # filled in by resource_changes, read by the actions
    if previous is not None and replan is not None and shared is not None:
        again = replan.keys
        # Planned again below, what the last plan found of these goes. A kept trace's specs and observed states
        # are read only where asked (for the changed resources, most often those planned again).
        specs = without(previous.specs, again)
        observed, changed = without(previous.observed, again), without(previous.changed, again)
        ctx = _context(request, own, shared, specs, observed=observed, changed=changed)
        fresh = resource_changes(request, own, ctx, problems, specs, keys=again, notes=shared.notes)
        outcomes = {key: fresh[key] if key in again else outcome for key, outcome in previous.outcomes.items()}
    else:
        shared = _shared(request, own, deposing, problems, details)
        specs = {}
        ctx = _context(request, own, shared, specs, observed={}, changed={})
        outcomes = resource_changes(request, own, ctx, problems, specs, deposing=deposing, notes=shared.notes)
    changes = [change for change, _, _ in outcomes.values() if change is not None]
    replaced = {c.key for c in changes if c.type is ChangeType.REPLACE}
    wanted = created_first(changes, request) - deposing - refused
    stale = deposing - replaced
    if wanted or stale:  # plan again, with the old VMs of these replacements deposed (see the module's docstring)
        return _plan_with_specs(original, (deposing | wanted) - stale, refused | stale)
    check_created_first(changes, request, problems)
    changes = select(changes, request, own)
    check_deletions(changes, request, own, problems, specs)
    check_quotas(request, problems)
    if problems:
        raise PlanError([*hosts_in_error(request), *problems], details)
    actions, edges = action_graph(changes, ctx, request, specs)
    check_created_first_order(changes, actions, edges, problems)
    if problems:
        raise PlanError([*hosts_in_error(request), *problems], details)
    plan = Plan(
        stack=request.stack,
        changes=tuple(changes),
        actions=tuple(actions),
        edges=edges,
        # What the state was (the deposed records are not written yet), computed when first asked for.
        fingerprinted=lambda: fingerprint(original),
        drift=tuple(item for _, items, _ in outcomes.values() for item in items),
        warnings=tuple(warning for _, _, warning in outcomes.values() if warning is not None),
    )
    # A plan that deposed VMs is made whole the next time: its request is not the one the next plan compares with.
    trace = None if deposing else PlanTrace(request, shared, outcomes, specs, ctx.observed, ctx.changed, redone)
    return plan, specs, trace


def _shared_again(
    request: PlanRequest, own: Mapping[ResourceKey, RecordView], previous: PlanTrace, replan: Replan
) -> Shared | None:
    """What the last plan's installation-wide steps settled, when it still holds: as it was, or (``replan.placing``)
    with every VM placed again, when each gets the host, instance type and note it had. None: plan everything."""
    shared = previous.shared
    if not replan.placing:
        return shared
    problems: list[str] = []
    notes: dict[ResourceKey, str] = {}
    instance_types: dict[ResourceKey, str] = {}
    placements = place_vms(request, own, shared.hosts, problems, notes=notes, instance_types=instance_types)
    if problems or placements != shared.placements or instance_types != shared.instance_types or notes != shared.notes:
        return None  # a VM goes elsewhere: addresses and datastores may follow it (the whole plan says why not)
    # The same hosts, but a record's host may have moved: whether each VM stays where recorded is told again.
    stayed = _stayed(placements, own)
    return shared if stayed == shared.stayed else dataclasses.replace(shared, stayed=stayed)


def _stayed(placements: Mapping[ResourceKey, str], own: Mapping[ResourceKey, RecordView]) -> bool:
    """Whether every VM placed goes to the host its record names (``Shared.stayed``)."""
    return all((record := own.get(key)) is not None and record.host == host for key, host in placements.items())


def _shared(
    request: PlanRequest,
    own: Mapping[ResourceKey, RecordView],
    deposing: frozenset[ResourceKey],
    problems: list[str],
    details: list[str],
) -> Shared:
    """The installation-wide steps, in order: spans, placement, incarnations, each kind's resolution."""
    hosts = sorted(key.name for key in request.documents if key.kind is Kind.HOST)
    spans = spans_of(request, hosts)
    notes: dict[ResourceKey, str] = {}
    instance_types: dict[ResourceKey, str] = {}
    placements = place_vms(
        request, own, hosts, problems, deposing, details=details, notes=notes, instance_types=instance_types
    )
    incarnations = incarnations_of(own, deposing)
    resolution = _resolve(
        request,
        own,
        spans=spans,
        placements=placements,
        incarnations=incarnations,
        deposing=deposing,
        problems=problems,
    )
    return Shared(
        hosts, spans, placements, instance_types, notes, incarnations, resolution, stayed=_stayed(placements, own)
    )


def _context(
    request: PlanRequest,
    own: Mapping[ResourceKey, RecordView],
    shared: Shared,
    specs: MutableMapping[ResourceKey, dict[str, Any]],
    *,
    observed: MutableMapping[ResourceKey, Mapping[str, Any]],
    changed: MutableMapping[ResourceKey, tuple[str, ...]],
) -> PlanningContext:
    resolution = shared.resolution
    return PlanningContext(
        stack=request.stack,
        documents=request.documents,
        records=own,
        hosts=shared.hosts,
        spans=shared.spans,
        placements=shared.placements,
        leases=resolution.leases,
        disk_datastores=resolution.disk_datastores,
        specs=specs,
        incarnations=shared.incarnations,
        macs=resolution.macs,
        instance_types=shared.instance_types,
        observed=observed,
        changed=changed,
    )


def _resolve(
    request: PlanRequest,
    own: Mapping[ResourceKey, RecordView],
    *,
    spans: Mapping[ResourceKey, tuple[str, ...]],
    placements: Mapping[ResourceKey, str],
    incarnations: Mapping[ResourceKey, int],
    deposing: frozenset[ResourceKey],
    problems: list[str],
) -> Resolution:
    """What every kind's reconciler resolves (``Reconciler.resolve``), merged: the keys are each kind's own."""
    found = [
        resolution
        for reconciler in request.reconcilers.values()
        if (
            resolution := reconciler.resolve(
                request,
                own,
                spans=spans,
                placements=placements,
                incarnations=incarnations,
                deposing=deposing,
                problems=problems,
            )
        )
        != _NOTHING
    ]
    if len(found) <= 1:  # the usual case (only VMs resolve anything): their maps as they are, not copied
        return found[0] if found else _NOTHING
    return Resolution(
        leases={k: v for r in found for k, v in r.leases.items()},
        macs={k: v for r in found for k, v in r.macs.items()},
        disk_datastores={k: v for r in found for k, v in r.disk_datastores.items()},
    )


_NOTHING = Resolution()
