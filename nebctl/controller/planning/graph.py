"""The action graph: each changed resource's actions (from its reconciler), and the order between resources: what a
resource builds waits for what it refers to being built; what it releases or destroys goes before what it used
is destroyed (``core.plans.Phase``); an address released is leased again only once released; the old VM of a
create-first replacement goes once its replacement is built.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nebctl.controller.planning.request import PlanRequest, references, sort_key
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Action, ChangeType, Edges, ResourceChange
from nebctl.reconcilers.base import ActionGroup, PlanningContext
from nebctl.reconcilers.identity import deposed_of


def _sides(group: ActionGroup) -> dict[str, set[str]]:
    """The ids of a group's actions on each side of the order: "build", and "destroy" for what releases or
    destroys (``Phase.tears_down``). An update first releases what it stops using (the shutdown, a NIC cleaned, a
    disk deleted, a host left): that part must finish before a resource it used is destroyed, while the rest may
    need that resource built again (a network replaced under a VM whose address changes)."""
    phases = group.phases
    if phases and phases.count(phases[0]) == len(phases):  # the usual group: every action on one side
        ids = {action.id for action in group.actions}
        return {"destroy": ids, "build": set()} if phases[0].tears_down else {"build": ids, "destroy": set()}
    sides: dict[str, set[str]] = {"build": set(), "destroy": set()}
    for action, phase in zip(group.actions, phases, strict=True):
        sides["destroy" if phase.tears_down else "build"].add(action.id)
    return sides


def _ends(group: ActionGroup, ids: set[str], *, first: bool) -> list[Action]:
    """Entry (``first``) or exit actions among ``ids`` of a group, by the group's own edges."""
    inside = [(a, b) for a, b in group.edges if a in ids and b in ids]
    blocked = {b for _, b in inside} if first else {a for a, _ in inside}
    return [action for action in group.actions if action.id in ids and action.id not in blocked]


def action_graph(
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
        if not change.is_change or change.record_only:
            continue
        group = request.reconcilers[change.key.kind].actions(change, ctx)
        actions.extend(group.actions)
        edges.extend(_deduplicated(group.edges))
        whole_list = whole_list or any(action.key != change.key for action in group.actions)
        for phase, ids in _sides(group).items():
            if ids:
                entries[(change.key, phase)] = _Ends(_ends(group, ids, first=True))
                exits[(change.key, phase)] = _Ends(_ends(group, ids, first=False))
    changed = {c.key: c for c in changes if c.is_change}
    for change in changed.values():
        key = change.key
        document = request.documents.get(key)
        record = ctx.records.get(key)
        # The spec resolved by resource_changes (computing it again costs a model dump per resource).
        desired = specs.get(key) if document is not None else None
        needed = references(request, key, desired)
        applied = references(request, key, record.applied if record is not None else None)
        whole_list = whole_list or key in needed or key in applied
        # Build after what it needs is built: on the same host where the dependency is a per-host one, else
        # wherever each of them is (see ``_per_host``).
        for ref in sorted(needed, key=sort_key):
            if (ref, "build") in exits and (key, "build") in entries:
                edges.extend(_linked(exits[(ref, "build")], entries[(key, "build")], by_host=_per_host(request, ref)))
        # Anything that used a resource in its last applied spec stops using it before that resource is
        # destroyed: its own destroy phase does that. Without one (an update that only builds), all of it goes
        # first, unless it needs the resource built again (then waiting for the destroy would be a cycle).
        # The old VM of a create-first replacement goes once its replacement is built, and that may wait for
        # a resource it uses being restarted (its release, then its build): it need not go before that
        # release too (a cycle), only before a resource it used is deleted.
        deposed = record is not None and deposed_of(key, record.live) is not None
        for ref in sorted(applied, key=sort_key):
            if (ref, "destroy") not in entries:
                continue
            if deposed and changed[ref].type is not ChangeType.DELETE:
                continue
            by_host = _per_host(request, ref)
            if (key, "destroy") in exits:
                edges.extend(_linked(exits[(key, "destroy")], entries[(ref, "destroy")], by_host=by_host))
            elif (key, "build") in exits and ref not in needed:
                edges.extend(_linked(exits[(key, "build")], entries[(ref, "destroy")], by_host=by_host))
    edges.extend(_deduplicated(_reused_addresses(changed, ctx, specs, entries, exits)))
    edges.extend(_deposed_after_replacements(changed, ctx, entries, exits))
    return actions, edges.done(deduplicate=whole_list)


def _per_host(request: PlanRequest, ref: ResourceKey) -> bool:
    """Whether what depends on ``ref`` needs only ``ref``'s actions on its own host: a host, or a resource that
    lives on many hosts (a datastore, an image, a network, a security group) with an action per host, of which
    a VM on one host uses only that host's part. Anything else (a VM a ``dependsOn`` names, say) is one thing,
    wherever it is: every action of it orders every action of its dependents, on every host."""
    return request.reconcilers[ref.kind].per_host


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
