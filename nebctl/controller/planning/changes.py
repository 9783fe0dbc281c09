"""What changed for every resource: the manifests against the records and what monitoring saw (drift), through
each kind's reconciler, as one ``ResourceChange`` per resource.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from nebctl.controller.planning.repairs import settle_repairs
from nebctl.controller.planning.request import PlanRequest, sort_key
from nebctl.core.fields import AddedFields, Effect, compare, dearest, flatten
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import ChangeType, DriftItem, ResourceChange
from nebctl.reconcilers.base import PlanningContext, RecordView
from nebctl.reconcilers.identity import VMIdentity, deposed_of
from nebctl.schemas.digests import with_metadata

# The reason of an update whose fields no driver acts on (labels, annotations, nebctl's own settings): the
# reconciler writes them in the ownership its live objects carry, and nothing else of them changes.
OWNERSHIP_ONLY = "only the applied spec written on its live objects changes"


# What the plan says of one resource: its change (None for a record kept outside the manifests), the drift it
# leaves uncorrected, and a warning (such a kept record's).
Outcome = tuple[ResourceChange | None, tuple[DriftItem, ...], str | None]


def resource_changes(  # noqa: PLR0912 - one decision table per resource: gone, new, unknown, deleted outside, equal, changed
    request: PlanRequest,
    own: Mapping[ResourceKey, RecordView],
    ctx: PlanningContext,
    problems: list[str],
    specs: MutableMapping[ResourceKey, dict[str, Any]],
    *,
    deposing: frozenset[ResourceKey] = frozenset(),
    notes: Mapping[ResourceKey, str] | None = None,
    keys: Iterable[ResourceKey] | None = None,
) -> dict[ResourceKey, Outcome]:
    """Each resource's outcome, in the plan's order: of every resource of the manifests and of ``own`` records,
    or of ``keys`` only (a plan made again for a few resources, ``incremental``)."""
    outcomes: dict[ResourceKey, Outcome] = {}
    for key in sorted(request.documents.keys() | own.keys() if keys is None else keys, key=sort_key):
        reconciler = request.reconcilers[key.kind]
        document = request.documents.get(key)
        record = own.get(key)
        if document is None:
            assert record is not None
            outcomes[key] = _gone(key, record, request)
            continue
        desired = specs[key] = with_metadata(reconciler.desired_spec(key, document, ctx), document)
        host = ctx.placements.get(key) if reconciler.placed else None
        if record is None or record.applied is None:
            problems.extend(_foreign_live_object(key, record, request))
            reason = "resuming an interrupted create" if record is not None else (notes or {}).get(key, "")
            created = ResourceChange(
                key, ChangeType.CREATE, _added(desired, reconciler.sensitive), host=host, reason=reason
            )
            outcomes[key] = (created, (), None)
            continue
        observed, refused = settle_repairs(
            key, reconciler.detect_drift(key, record, request.live), record, request, ctx.spans.get(key, ())
        )
        uncorrected = tuple(refused)
        if observed.spec is not None and observed.spec is not record.applied:
            ctx.observed[key] = observed.spec  # type: ignore[index]  # the planner's own dict, filled here
        if observed.changed:
            ctx.changed[key] = observed.changed  # type: ignore[index]  # likewise
        if observed.unknown:
            outcomes[key] = (
                ResourceChange(key, ChangeType.NOOP, host=record.host),
                (*uncorrected, *observed.drift),
                None,
            )
            continue
        if observed.spec is None:
            created = ResourceChange(
                key,
                ChangeType.CREATE,
                _added(desired, reconciler.sensitive),
                host=host,
                reason="deleted outside nebctl",
                drift=observed.drift,
            )
            outcomes[key] = (created, uncorrected, None)
            continue
        if observed.spec == desired and not observed.changed:
            # The common case of a converged resource: equal specs have no field to list, and comparing them
            # field by field (flatten, sort, rule lookups) is most of a no-op plan's time.
            outcomes[key] = (_settled(key, record, observed.drift), uncorrected, None)
            continue
        ignored = reconciler.ignored(document)
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
        for field_change in fields:
            if field_change.effect is Effect.IMMUTABLE:
                problems.append(f"{key}: {field_change.path} cannot change ({field_change.why})")
        problems.extend(reconciler.refusals(key, fields, effect))
        if not fields and not observed.changed:
            change = _settled(key, record, observed.drift)
        elif effect is Effect.REPLACE:
            change = ResourceChange(
                key,
                ChangeType.REPLACE,
                tuple(fields),
                host=host or record.host,
                previous_host=record.host,
                drift=observed.drift,
                unchanged=unchanged,
                create_first=key in deposing,
            )
        else:
            previous_host = observed.spec.get("host") if reconciler.placed else None
            change = ResourceChange(
                key,
                ChangeType.UPDATE,
                tuple(fields),
                restart=effect is Effect.RESTART,
                host=host or record.host,
                previous_host=previous_host,
                reason=_ownership_only(key, effect, observed.drift, reconciler.placed, ctx),
                drift=observed.drift,
                unchanged=unchanged,
            )
        outcomes[key] = (change, uncorrected, None)
    return outcomes


def _gone(key: ResourceKey, record: RecordView, request: PlanRequest) -> Outcome:
    """The outcome of a record of the stack that the manifests no longer declare: deleted with ``--prune``, else
    kept with a warning. A deposed old VM is always deleted, whatever became of an earlier attempt: it only waited
    for its replacement."""
    if request.prune or record.status == "deleting" or deposed_of(key, record.live) is not None:
        return (
            ResourceChange(key, ChangeType.DELETE, host=record.host, reason=_deleting_reason(key, record)),
            (),
            None,
        )
    return (None, (), f"{key} is no longer in the manifests; it is kept (use --prune to delete it)")


def _ownership_only(
    key: ResourceKey, effect: Effect, drift: Sequence[DriftItem], placed: bool, ctx: PlanningContext
) -> str:
    """The reason of an update whose fields no driver acts on, for a kind with live objects (a VM, a resource
    spanning hosts): their ownership is all that is written. A kind without (a host, a hook) has no reason."""
    if effect is not Effect.NONE or drift or not (placed or key in ctx.spans):
        return ""
    return OWNERSHIP_ONLY


def _settled(key: ResourceKey, record: RecordView, drift: tuple[DriftItem, ...]) -> ResourceChange:
    """The change of a resource whose live objects are as declared: none, unless its record is behind them. An
    update stopped after its last action but before its record was written (status ``updating``) is finished
    by writing the record; so is one whose drift made the live objects what the manifests now declare (a
    network's hosts deleted outside nebctl, which the manifests no longer list). Left alone, such a record
    would keep saying what is no longer so, and the status of an update that is over."""
    if record.status == "updating":
        reason = "finishing an interrupted update"
    elif drift:
        reason = "already as declared; the record is brought up to date"
        drift = tuple(
            dataclasses.replace(item, correction="as the manifests declare; only the record changes") for item in drift
        )
    else:
        return ResourceChange(key, ChangeType.NOOP, host=record.host)
    return ResourceChange(key, ChangeType.UPDATE, host=record.host, reason=reason, drift=drift, record_only=True)


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
