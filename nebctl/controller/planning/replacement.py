"""Create-before-destroy: a VM replaced with ``lifecycle.createBeforeDestroy`` keeps its old VM, *deposed* under a
record of its own, until the new one runs. The planner plans such a replacement again as if the old VMs were
already deposed (``with_deposed``), each new VM as the next incarnation (``incarnations_of``), and refuses a
create-first replacement that cannot keep its promise (``check_created_first``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nebctl.controller.planning.request import PlanRequest, references, sort_key
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.ordering import never_free
from nebctl.core.plans import Action, ChangeType, ResourceChange
from nebctl.reconcilers.base import RecordView
from nebctl.reconcilers.identity import VMIdentity
from nebctl.schemas.models import spec_document


@dataclass(frozen=True)
class _DeposedView:
    """The record a create-first replacement will leave for the old VM (``Reconciler.depose``), as planning reads it
    before the apply writes it."""

    stack: str
    applied: Mapping[str, Any] | None
    status: str
    live: Mapping[str, Any]
    host: str | None


def with_deposed(request: PlanRequest, deposing: frozenset[ResourceKey]) -> PlanRequest:
    """``request`` as it will be once the old VMs of ``deposing`` are deposed: each has its own record, being
    deleted, which holds its host's capacity and its addresses until it is gone."""
    if not deposing:
        return request
    records = dict(request.records)
    # In key order, each deposed key taken once chosen: the order and the keys the apply's journal uses.
    taken = set(request.records)
    for key in sorted(deposing, key=sort_key):
        record = request.records[key]
        deposed, live, _ = request.reconcilers[key.kind].depose(key, record.live, taken)
        taken.add(deposed)
        records[deposed] = _DeposedView(record.stack, record.applied, "deleting", live, record.host)
    return dataclasses.replace(request, records=records)


def incarnations_of(own: Mapping[ResourceKey, RecordView], deposing: frozenset[ResourceKey]) -> dict[ResourceKey, int]:
    """Every VM's incarnation where it is not 0: the recorded one, or the next one for a create-first
    replacement."""
    incarnations = {}
    for key, record in own.items():
        if key.kind is Kind.VIRTUAL_MACHINE and record.live.get("incarnation"):
            incarnations[key] = int(record.live["incarnation"])
    for key in deposing:
        incarnations[key] = VMIdentity.recorded(key, own[key].live).incarnation + 1
    return incarnations


def created_first(changes: Sequence[ResourceChange], request: PlanRequest) -> frozenset[ResourceKey]:
    """The replaced VMs whose manifests ask for the new VM before the old one goes."""
    wanted = set()
    for change in changes:
        if change.type is ChangeType.REPLACE and not change.create_first:
            document = request.documents.get(change.key)
            if document is not None and request.reconcilers[change.key.kind].creates_first(document):
                wanted.add(change.key)
    return frozenset(wanted)


def check_created_first(changes: Sequence[ResourceChange], request: PlanRequest, problems: list[str]) -> None:
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
        used = references(request, change.key, spec_document(document)) if document is not None else set()
        for ref in sorted(used & recreated, key=sort_key):
            problems.append(
                f"{change.key}: lifecycle.createBeforeDestroy cannot be honoured: {ref}, which both the old and the"
                " new VM use, is replaced by this plan (deleted, then created), so the old VM would have to go"
                " before the new one is created; drop createBeforeDestroy for this change"
            )


def check_created_first_order(
    changes: Sequence[ResourceChange], actions: Sequence[Action], edges: Iterable[tuple[str, str]], problems: list[str]
) -> None:
    """A create-first replacement whose new VM must wait for something that waits for its old VM to go (an
    address it is given that a VM the old one depends on releases, say) makes an order that cannot run: said
    plainly, naming the replacements caught in it, instead of a plan whose actions would wait for each other
    forever. Only plans with such replacements are looked at (every other order is built acyclic)."""
    first = {change.key for change in changes if change.create_first}
    if not first:
        return
    waiting = never_free((action.id for action in actions), edges)
    stuck = {action.key for action in actions if action.id in waiting}
    for key in sorted(first & stuck, key=sort_key):
        problems.append(
            f"{key}: lifecycle.createBeforeDestroy cannot be honoured: the new VM would have to wait for what "
            "waits for the old VM to go (an address or a resource the old VM's dependencies release), so neither "
            "could ever start; drop createBeforeDestroy for this change"
        )
    if stuck and not problems:
        names = ", ".join(str(key) for key in sorted(stuck, key=sort_key)[:5])
        problems.append(f"the order of this plan's actions cannot run: {names} wait for each other")
