"""What the apply loop hands around and writes: the options of a plan, a plan ready to apply with what it was made
from, an apply's result, and the summaries and event payloads written to the database and given to hooks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nebctl.controller.applying.executing import ExecutionReport, Outcome
from nebctl.controller.planning import PlanRequest
from nebctl.core.keys import ResourceKey
from nebctl.core.plans import Plan
from nebctl.database.records import ApplyState, EventRecord, ResourceRecord
from nebctl.database.versions import Versions
from nebctl.drivers.types import HostRef


@dataclass(frozen=True)
class PlanOptions:
    stack: str
    prune: bool = False
    targets: frozenset[ResourceKey] = frozenset()
    excludes: frozenset[ResourceKey] = frozenset()
    # Who plans (the API's identity, or the system user of the CLI): the quotas of their groups apply.
    user: str | None = None
    groups: tuple[str, ...] | None = None  # None: the user's groups in the database


@dataclass(frozen=True)
class PlannedApply:
    """A plan together with what it was made from, ready to be applied."""

    plan: Plan
    request: PlanRequest
    hosts: Mapping[str, tuple[HostRef, Any]]
    final_specs: Mapping[ResourceKey, dict[str, Any]]  # the spec each changed resource has once applied
    # Records whose secrets an older key sealed: the apply writes them again, sealed with the current key.
    resealed: Sequence[ResourceRecord] = ()
    # The database's change counters once the plan was made, when nothing but the plan's own writing of what it
    # observed came between its reading of the records and its end; None when something else wrote.
    versions: Versions | None = None
    # Whether the stack's kept trace (``kept_traces``) holds for the records as ``versions`` counts them: the plan
    # found it so, kept it, or moved its state there. An apply then moves it on with the records it writes.
    trace_holds: bool = False
    # The resources table's summary at ``versions`` (``Store.resources_stamp``), when the plan knew it without
    # reading it again: the kept trace's, which held (a plan writes no record).
    table: tuple[Any, ...] | None = None


@dataclass
class ApplyResult:
    apply_id: int
    report: ExecutionReport
    resumed_from: int | None = None
    state: str = ApplyState.SUCCEEDED


def spec_hash(spec: Mapping[str, Any] | None) -> str | None:
    if spec is None:
        return None
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def event_payload(event: EventRecord, identifier: int) -> dict[str, Any]:
    """An event as hooks receive it on stdin: what the event log holds, nothing more (so no secret)."""
    return {
        "id": identifier,
        "type": event.type,
        "message": event.message,
        "kind": event.kind.value if event.kind is not None else None,
        "namespace": event.namespace,
        "name": event.name,
        "stack": event.stack,
        "severity": str(event.severity),
        "data": dict(event.data),
    }


def plan_summary(plan: Plan) -> dict[str, Any]:
    summary = plan.summary
    return {
        "fingerprint": plan.fingerprint,
        "add": summary.add,
        "change": summary.change,
        "destroy": summary.destroy,
        "actions": len(plan.actions),
        "changes": [{"resource": str(c.key), "type": c.type.value} for c in plan.changes if c.is_change],
    }


def report_summary(report: ExecutionReport, plan: Plan) -> dict[str, Any]:
    return {
        "succeeded": len(report.with_state(Outcome.SUCCEEDED)),
        "failed": [{"action": r.action.id, "error": r.error} for r in report.with_state(Outcome.FAILED)],
        "skipped": [{"action": r.action.id, "blocked_by": r.blocked_by} for r in report.with_state(Outcome.SKIPPED)],
        "cancelled": len(report.with_state(Outcome.CANCELLED)),
        "actions": len(plan.actions),
        "seconds": round(report.wall_time, 3),
    }
