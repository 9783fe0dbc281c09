"""The shared reconciler of kinds that exist once per host: datastores, images, networks, security groups.

Such a resource "spans" a set of hosts (its ``hosts`` field, or every host of the manifests when that is empty).
Creating it is one driver action per host; a change of the span creates it on the new hosts and deletes it
from the removed ones; other changes apply in place or force a replacement according to the kind's rules.
The resolved span is what gets compared and recorded, so adding a Host to the manifests extends every
resource that spans "all hosts" to it on the next apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nebctl.core.families import Family
from nebctl.core.fields import Effect, FieldRule
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Action, ChangeType, DriftItem, Phase, ResourceChange
from nebctl.drivers.errors import NotFoundError
from nebctl.drivers.types import Ownership
from nebctl.reconcilers.base import (
    METADATA_RULE,
    ActionGroup,
    LiveView,
    Observed,
    PlainKind,
    PlanningContext,
    RecordView,
    World,
    action_id,
    per_host,
    write_ownership,
)
from nebctl.schemas.models import AnyManifest, Host, spec_document
from nebctl.schemas.references import BY_KIND, Reference

# realise(key, host, world) for one host; returns the live patch.
HostStep = Callable[[ResourceKey, str, World], Mapping[str, Any]]
# fingerprint(key, applied spec, record's live values): what the live object should be on each host, in the
# terms of ``drivers.fingerprints``; None when the spec does not say.
ExpectedFingerprint = Callable[[ResourceKey, Mapping[str, Any], Mapping[str, Any]], Mapping[str, str] | None]
# span(key, document, documents, hosts): the hosts the resource lives on.
SpanRule = Callable[[ResourceKey, AnyManifest, Mapping[ResourceKey, AnyManifest], Sequence[str]], tuple[str, ...]]


def span_of_hosts_field(
    key: ResourceKey, document: AnyManifest, documents: Mapping[ResourceKey, AnyManifest], hosts: Sequence[str]
) -> tuple[str, ...]:
    """The resource's ``hosts`` field when set (only those that exist), else every host."""
    chosen = getattr(document.spec, "hosts", None) or hosts
    known = set(hosts)  # a thousand hosts: a list lookup per host was quadratic
    return tuple(sorted(host for host in chosen if host in known))


def storage_hosts(documents: Mapping[ResourceKey, AnyManifest], hosts: Sequence[str]) -> list[str]:
    """The hosts that can keep datastores: all but cloud hosts (a VM there boots from the cloud's image)."""
    return [
        host
        for host in hosts
        if not isinstance(cloud := documents.get(ResourceKey.of(Kind.HOST, host)), Host) or cloud.spec.cloud is None
    ]


def span_of_storage(
    key: ResourceKey, document: AnyManifest, documents: Mapping[ResourceKey, AnyManifest], hosts: Sequence[str]
) -> tuple[str, ...]:
    """A datastore's ``hosts`` field when set (only those that exist), else every host but cloud hosts."""
    if getattr(document.spec, "hosts", None):
        return span_of_hosts_field(key, document, documents, hosts)
    return tuple(sorted(storage_hosts(documents, hosts)))


def ownership(key: ResourceKey, stack: str) -> Ownership:
    return Ownership(stack=stack, kind=key.kind.value, namespace=key.namespace, name=key.name)


@dataclass(frozen=True)
class Step:
    family: Family
    operation: str
    description: str
    run: HostStep


@dataclass(frozen=True)
class Repair:
    """How an object changed outside nebctl on a host is put back: by ``step`` (one that redefines an existing
    object, such as a security group's ``update_sg``), or by deleting it and creating it again when ``step`` is
    None. ``note`` is the drift's correction, as ``diff`` prints it."""

    step: Step | None = None
    note: str = "it will be deleted and created again there"


def fingerprint_changes(expected: Mapping[str, str], seen: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(field, applied, live) for each field of both fingerprints whose values differ, by field name. A field
    only one side has is no difference: a driver reads what it can, a spec says what it declares."""
    shared = sorted(expected.keys() & seen.keys())
    return [(name, expected[name], seen[name]) for name in shared if expected[name] != seen[name]]


def changed_sentence(thing: tuple[str, str], host: str, changes: Sequence[tuple[str, str, str]]) -> str:
    """``network lan was changed outside nebctl on kvm-a1: cidr 10.0.0.0/24 -> 10.9.0.0/24``."""
    fields = "; ".join(f"{name} {was} -> {now}" for name, was, now in changes)
    return f"{thing[0]} {thing[1]} was changed outside nebctl on {host}: {fields}"


class SpannedReconciler(PlainKind):
    """Reconciler for a kind that lives on a set of hosts. ``update`` is the in-place step, if the kind has one."""

    sensitive: Sequence[str] = ()
    placed = False
    per_host = True

    def __init__(
        self,
        *,
        kind: Kind,
        rules: Sequence[FieldRule],
        create: Step,
        delete: Step,
        update: Step | None = None,
        span: SpanRule = span_of_hosts_field,
        live_object: Callable[[ResourceKey], tuple[str, str]] | None = None,
        fingerprint: ExpectedFingerprint | None = None,
        repair: Repair = Repair(),
        pool: Callable[[Mapping[str, Any]], str] | None = None,
    ) -> None:
        self.kind = kind
        self._live_object = live_object  # what the resource is on a host: ("network", "lan"), for drift
        self._pool = pool  # the pool its live object is in, from its spec (an image volume's)
        self._fingerprint = fingerprint
        self._repair = repair
        self._span = span
        self.rules = [
            FieldRule("hosts", Effect.IN_PLACE, "the resource is added to or removed from hosts"),
            METADATA_RULE,
            *rules,
        ]
        self.default = FieldRule("", Effect.REPLACE, "this field cannot change in place")
        self._create = create
        self._delete = delete
        self._update = update

    def references(self, key: ResourceKey, spec: Mapping[str, Any]) -> list[Reference]:
        return BY_KIND[self.kind](key, spec)

    def span(
        self,
        key: ResourceKey,
        document: AnyManifest,
        documents: Mapping[ResourceKey, AnyManifest],
        hosts: Sequence[str],
    ) -> tuple[str, ...] | None:
        return self._span(key, document, documents, hosts)

    def desired_spec(self, key: ResourceKey, document: AnyManifest, ctx: PlanningContext) -> dict[str, Any]:
        spec = spec_document(document)
        spec["hosts"] = list(ctx.spans.get(key, ()))
        return spec

    def detect_drift(self, key: ResourceKey, record: RecordView, live: LiveView) -> Observed:
        """What was applied, less the hosts whose listing (``LiveView.objects``: one bulk call per host, never
        one per object) lacks the object (deleted outside nebctl there: created again) or whose object's
        fingerprint differs from the applied spec's (changed outside nebctl: repaired there, ``Observed.changed``).
        A host that was not listed (no inventory, not answering) is taken to hold what was applied; an object
        listed without a fingerprint is judged by its presence only."""
        applied = record.applied
        if applied is None or self._live_object is None or not live.objects:
            return Observed(spec=applied)
        thing = self._live_object(key)
        hosts = [str(host) for host in applied.get("hosts") or []]
        missing = [host for host in hosts if host in live.objects and thing not in live.objects[host]]
        expected = self._fingerprint(key, applied, record.live) if self._fingerprint is not None else None
        changed: dict[str, list[tuple[str, str, str]]] = {}
        if expected:
            for host in hosts:
                seen = live.fingerprints.get(host, {}).get(thing)
                if seen is not None and host not in missing and (changes := fingerprint_changes(expected, seen)):
                    changed[host] = changes
        if not missing and not changed:
            return Observed(spec=applied)
        drift = tuple(
            DriftItem(
                key, f"{thing[0]} {thing[1]} was deleted outside nebctl on {host}", "it will be created again", host
            )
            if host in missing
            else DriftItem(key, changed_sentence(thing, host, changed[host]), self._repair.note, host)
            for host in hosts
            if host in missing or host in changed
        )
        kept = [host for host in hosts if host not in missing and host not in changed]
        if not kept and not changed:
            return Observed(spec=None, drift=drift)
        rebuilt = tuple(changed) if self._repair.step is None else ()
        return Observed(spec={**applied, "hosts": kept}, drift=drift, changed=tuple(changed), rebuilt=rebuilt)

    def actions(self, change: ResourceChange, ctx: PlanningContext) -> ActionGroup:
        key = change.key
        desired_hosts = list(ctx.spans.get(key, ()))
        record = ctx.records.get(key)
        recorded_hosts = _recorded_hosts(record)
        observed = ctx.observed.get(key)
        if observed is not None and change.type is ChangeType.UPDATE:
            # Deleted outside nebctl on some hosts: those are built again, as hosts it is added to.
            recorded_hosts = [str(host) for host in observed.get("hosts") or []]
        if change.type is ChangeType.CREATE:
            return ActionGroup.of(self._per_host(key, self._create, desired_hosts), Phase.BUILD)
        if change.type is ChangeType.DELETE:
            return ActionGroup.of(self._per_host(key, self._delete, recorded_hosts or desired_hosts), Phase.DESTROY)
        if change.type is ChangeType.REPLACE:
            deletes = self._per_host(key, self._delete, recorded_hosts)
            creates = self._per_host(key, self._create, desired_hosts, suffix="new")
            edges = tuple((d.id, c.id) for d in deletes for c in creates if d.host == c.host)
            phases = (Phase.DESTROY,) * len(deletes) + (Phase.BUILD,) * len(creates)
            return ActionGroup(tuple(deletes + creates), edges, phases)
        if change.type is ChangeType.UPDATE:
            # Changed outside nebctl on some hosts: the object is there, but not as applied. It is repaired on
            # those the resource keeps, and deleted from those it leaves.
            changed = [host for host in ctx.changed.get(key, ()) if host not in recorded_hosts]
            present = recorded_hosts + changed
            added = [host for host in desired_hosts if host not in present]
            removed = [host for host in present if host not in desired_hosts]
            repaired = [host for host in desired_hosts if host in changed]
            built = self._per_host(key, self._create, added)
            left = self._per_host(key, self._delete, removed)  # the hosts it leaves: released before they go
            in_place = [c for c in change.fields if c.effect is Effect.IN_PLACE and c.path.split("[")[0] != "hosts"]
            if in_place and self._update is not None:
                kept = [host for host in desired_hosts if host in recorded_hosts]
                updated = self._per_host(key, self._update, kept)
            else:
                updated = []
            # A change only the record would see (labels, annotations) is written on the live objects the rest
            # of the change leaves alone, in their ownership: ``nebctl recover`` rebuilds it from there.
            acted = {action.host for action in updated}
            kept_here = [host for host in desired_hosts if host in recorded_hosts and host not in acted]
            owned = kept_here if _respecified(key, ctx) else []
            restamped = self._per_host(key, OWN, owned) if self._live_object is not None else []
            repair = self._repair.step
            if repair is not None:
                fixed, gone, remade = self._per_host(key, repair, repaired), [], []
            else:
                fixed = []
                gone = self._per_host(key, self._delete, repaired)
                remade = self._per_host(key, self._create, repaired)
            edges = tuple((d.id, c.id) for d, c in zip(gone, remade, strict=True))
            actions = built + left + updated + restamped + fixed + gone + remade
            phases = (
                (Phase.BUILD,) * len(built)
                + (Phase.RELEASE,) * len(left)
                + (Phase.BUILD,) * (len(updated) + len(restamped) + len(fixed))
                + (Phase.DESTROY,) * len(gone)
                + (Phase.BUILD,) * len(remade)
            )
            return ActionGroup(tuple(actions), edges, phases)
        return ActionGroup()

    def _per_host(self, key: ResourceKey, step: Step, hosts: Sequence[str], suffix: str = "") -> list[Action]:
        operation = step.operation
        actions = per_host(key, hosts, family=step.family, operation=operation, description=step.description)
        if suffix:
            actions = [
                Action(
                    id=action_id(key, operation, suffix, a.host),
                    key=a.key,
                    family=a.family,
                    operation=a.operation,
                    host=a.host,
                    params=a.params,
                    description=a.description,
                )
                for a in actions
            ]
        return actions

    def realise(self, action: Action, world: World) -> Mapping[str, Any]:
        assert action.host is not None, "spanned resources act per host"
        if action.operation == OWN.operation:
            assert self._live_object is not None, "only a kind with a live object is planned an ownership write"
            what, name = self._live_object(action.key)
            pool = self._pool(spec_of(world, action.key)) if self._pool is not None else ""
            write_ownership(world, action.host, what, name, world.ownership(action.key), pool=pool)
            return {}
        for step in (self._create, self._delete, self._update):
            if step is not None and step.operation == action.operation:
                if step is self._delete:
                    try:
                        return step.run(action.key, action.host, world)
                    except NotFoundError:
                        return {}  # already gone: deleting is idempotent
                return step.run(action.key, action.host, world)
        raise ValueError(f"{self.kind.value} has no action {action.operation!r}")


def _own(key: ResourceKey, host: str, world: World) -> Mapping[str, Any]:
    raise AssertionError("realised by SpannedReconciler.realise")  # the live object's names are the reconciler's


OWN = Step(Family.MONITORING, "own", "write the applied spec (labels, annotations) on its live object", _own)


def _respecified(key: ResourceKey, ctx: PlanningContext) -> bool:
    """Whether the spec to apply differs from the one applied (their spans aside): the ownership on the live
    objects carries the applied spec, so it is written again where nothing else of the change rewrites it."""
    record, desired = ctx.records.get(key), ctx.specs.get(key)
    if record is None or record.applied is None or desired is None:
        return False
    return {**record.applied, "hosts": None} != {**desired, "hosts": None}


def _recorded_hosts(record: RecordView | None) -> list[str]:
    if record is None or record.applied is None:
        return []
    hosts = record.applied.get("hosts") or []
    return [str(host) for host in hosts]


def spec_of(world: World, key: ResourceKey) -> Mapping[str, Any]:
    """The spec to act on: the desired one, or for a deletion the one last applied."""
    document = world.desired(key)
    if document is not None:
        return spec_document(document)
    record = world.record(key)
    if record is None or record.applied is None:
        raise ValueError(f"{key}: neither desired nor recorded")
    return record.applied
