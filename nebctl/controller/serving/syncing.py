"""One sync of one stack by the service: plan, decide what drift to heal or only report, act under the writers'
lock through the same controller and journal as ``nebctl apply``, and record the outcome.

Planning first happens without the lock, so an idle resync (nothing to do) never keeps a CLI ``apply`` waiting;
only when there is something to do is the lock taken, the plan made again under it (the plan that runs is the
plan of the state the lock protects), and executed. An apply of this stack that a dead process left unfinished
is resumed the same way. Drift is a change whose manifest did not move since it was last applied: with
self-heal it is corrected, each resource behind its own backoff; in report-only mode it is recorded as
``drift.detected`` and left alone. Used by ``service.Service``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nebctl.controller.applying import ApplyResult, Controller, PlannedApply, PlanOptions
from nebctl.controller.applying.executing import Change, Outcome
from nebctl.controller.applying.values import spec_hash
from nebctl.controller.planning import PlanError
from nebctl.controller.planning.incremental import whole_after
from nebctl.controller.reaping import end_orphaned_programs
from nebctl.controller.serving.backoff import Backoff
from nebctl.controller.serving.eventing import EventSink
from nebctl.controller.serving.metrics import ServiceMetrics
from nebctl.controller.serving.sources import Snapshot
from nebctl.controller.serving.statuses import HealthFacts, resource_health, stack_status
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Plan
from nebctl.core.service import ServeSettings
from nebctl.database.errors import DatabaseError, LockNotObtained
from nebctl.database.leasing import Fenced
from nebctl.database.records import (
    ApplyState,
    LockRecord,
    ResourceHealthRecord,
    ResourceRecord,
    Severity,
    StackStatusRecord,
    SyncStatus,
)
from nebctl.database.store import Store
from nebctl.drivers.errors import DriverError
from nebctl.schemas.models import spec_document

log = logging.getLogger(__name__)

LOCK_TTL = 60.0
LOCK_RETRY = 5.0  # seconds before a sync that found the lock taken tries again


@dataclass(frozen=True)
class SyncResult:
    result: str  # in-sync, applied, failed, partial, interrupted, invalid, plan-error, locked, error
    status: SyncStatus
    apply_id: int | None = None
    retry_after: float | None = None
    # Whether the next plan would be made whole (the apply created or deleted resources, or changed many): the
    # service then plans once more when idle, only to keep that plan's trace (``warm``).
    cold: bool = False


@dataclass
class StackSyncer:
    stack: str
    controller: Controller
    serve: ServeSettings
    events: EventSink
    metrics: ServiceMetrics
    self_heal: bool = True
    prune: bool = False
    parallelism: int | None = None
    hosts_in_error: Callable[[], frozenset[str]] = frozenset
    source: dict[str, object] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    # Who takes the writers' lock, and which holders may be taken over (a replica that lost its lease).
    lock_holder: str | None = None
    superseded: Callable[[LockRecord], bool] | None = None
    on_acting: Callable[[], None] | None = None  # told when the apply starts (the planning is over)
    backoff: Backoff[ResourceKey] = field(init=False)
    _reported: set[ResourceKey] = field(default_factory=set, init=False)
    _degraded: dict[ResourceKey, str] = field(default_factory=dict, init=False)
    _problems: tuple[str, ...] = field(default=(), init=False)
    _started: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.backoff = Backoff(
            initial=self.serve.backoff_initial, factor=self.serve.backoff_factor, maximum=self.serve.backoff_max
        )

    @property
    def store(self) -> Store:
        return self.controller.store

    def next_deadline(self) -> float | None:
        """When a resource waiting for its next heal may be healed (the service wakes then)."""
        return self.backoff.next_deadline()

    # --- one sync ----------------------------------------------------------------------------------------------

    def sync(self, snapshot: Snapshot, *, stop: threading.Event, reason: str) -> SyncResult:
        started = time.monotonic()
        try:
            return self._sync(snapshot, stop=stop, reason=reason)
        finally:
            self.metrics.reconcile_duration.observe(time.monotonic() - started)

    def _sync(self, snapshot: Snapshot, *, stop: threading.Event, reason: str) -> SyncResult:
        revision = snapshot.revision.label if snapshot.revision else None
        if snapshot.documents is None:
            return self._invalid(snapshot, revision)
        self._problems = ()
        documents = snapshot.documents
        try:
            began, cpu = time.monotonic(), time.thread_time()
            version = self.store.records_version()
            planned = self.controller.plan(documents, PlanOptions(self.stack, prune=self.prune))
            self._count_plan()
            log.debug(
                "plan of stack %s made in %.3fs (%.3fs of CPU)",
                self.stack,
                time.monotonic() - began,
                time.thread_time() - cpu,
            )
        except PlanError as error:
            return self._plan_error(error.problems, revision)
        except Fenced:
            raise  # this replica no longer leads: the service steps down
        except (DatabaseError, DriverError, OSError) as error:
            log.error("sync of stack %s: %s", self.stack, error)
            self.metrics.sync_total.labels(self.stack, "error").inc()
            return SyncResult("error", SyncStatus.UNKNOWN, retry_after=LOCK_RETRY)
        # The controller plans from the store's records, so they are ``ResourceRecord``s.
        records = {
            k: r for k, r in planned.request.records.items() if isinstance(r, ResourceRecord) and r.stack == self.stack
        }
        drift = self._drift(planned.plan, records, documents)
        now = self.clock()
        for key in self.backoff.tracked():
            if key not in drift:  # in sync again: its next failure starts from the first delay
                self.backoff.reset(key)
                self._degraded.pop(key, None)
        self._report_drift(drift)
        excluded = set(drift) if not self.self_heal else self.backoff.waiting(drift, now)
        self.metrics.set_drift(self.stack, dict(Counter(key.kind.short for key in drift)))
        unfinished = self.store.last_unfinished_apply(self.stack)
        acting = [c for c in planned.plan.changes if c.is_change and c.key not in excluded]
        if not acting and unfinished is None:
            status = self._record(
                records, documents, revision, snapshot, excluded=excluded, drift=drift, plan=planned.plan
            )
            self.metrics.sync_total.labels(self.stack, "in-sync" if status is SyncStatus.SYNCED else "noop").inc()
            return SyncResult("in-sync", status)
        # The plan made without the lock stands if it excludes nothing and no writer moved the records since.
        reusable = (planned, version) if not excluded else None
        return self._act(snapshot, revision, excluded=excluded, drift=drift, stop=stop, reason=reason, reuse=reusable)

    def _act(
        self,
        snapshot: Snapshot,
        revision: str | None,
        *,
        excluded: set[ResourceKey],
        drift: Mapping[ResourceKey, str],
        stop: threading.Event,
        reason: str,
        reuse: tuple[PlannedApply, tuple[Any, ...]] | None = None,
    ) -> SyncResult:
        assert snapshot.documents is not None
        documents = snapshot.documents
        # Until the lock is ours the stack is out of sync: a status still saying "synced" from the last apply
        # would tell a reader waiting for convergence that this change is already done.
        self._save_status(SyncStatus.OUT_OF_SYNC, revision, snapshot, message="changes to apply; waiting for the lock")
        try:
            lease = self.store.acquire_lock(
                holder=self.lock_holder or f"nebctl serve (stack {self.stack})",
                timeout=self.serve.lock_wait,
                ttl=LOCK_TTL,
                superseded=self.superseded,
            )
        except LockNotObtained as error:
            log.warning("sync of stack %s waits for another writer: %s", self.stack, error)
            self.metrics.sync_total.labels(self.stack, "locked").inc()
            return SyncResult("locked", SyncStatus.OUT_OF_SYNC, retry_after=LOCK_RETRY)
        lease.start_renewing()
        log.debug("writers' lock taken for stack %s", self.stack)
        try:
            # Programs that a dead writer started (an exec driver's, a hook, a probe) and that still run end now.
            end_orphaned_programs(self.store)
            if stop.is_set():
                return SyncResult("interrupted", SyncStatus.UNKNOWN)
            if reuse is not None and self.store.records_version() == reuse[1]:
                planned = reuse[0]
            else:
                planned = self.controller.plan(
                    documents, PlanOptions(self.stack, prune=self.prune, excludes=frozenset(excluded))
                )
                self._count_plan()
            plan = planned.plan
            if not plan.actions and self.store.last_unfinished_apply(self.stack) is None:
                # Another writer applied the same change while this sync waited for the lock: an empty apply
                # would only add a line to the history (and one a stop could catch half-recorded).
                records = {r.key: r for r in self.store.list_resources(stack=self.stack)}
                status = self._record(
                    records,
                    documents,
                    revision,
                    snapshot,
                    excluded=excluded,
                    drift={k: v for k, v in drift.items() if k in excluded},
                    plan=plan,
                )
                self.metrics.sync_total.labels(self.stack, "in-sync").inc()
                return SyncResult("in-sync", status)
            self.events.emit(
                "sync.started",
                f"sync of stack {self.stack} started ({reason}): {plan.summary}",
                stack=self.stack,
                data={"reason": reason, "revision": revision, "actions": len(plan.actions)},
            )
            self._save_status(SyncStatus.PROGRESSING, revision, snapshot, message=f"applying: {plan.summary}")
            log.debug("apply of stack %s starts: %s", self.stack, plan.summary)
            if self.on_acting is not None:
                self.on_acting()
            result = self.controller.apply(
                planned, parallelism=self.parallelism, revision=snapshot.revision, stop=stop, on_change=self._timed
            )
        except PlanError as error:
            return self._plan_error(error.problems, revision)
        except Fenced:
            raise  # this replica no longer leads: the service steps down
        except (DatabaseError, DriverError, OSError) as error:
            log.error("sync of stack %s: %s", self.stack, error)
            self.metrics.sync_total.labels(self.stack, "error").inc()
            return SyncResult("error", SyncStatus.UNKNOWN, retry_after=LOCK_RETRY)
        finally:
            lease.release()
        failed = self._heal_outcomes(result, plan, drift, excluded)
        state = result.state
        self.events.emit(
            "sync.finished",
            f"sync of stack {self.stack} {state} (apply #{result.apply_id})",
            severity=Severity.INFO if state == ApplyState.SUCCEEDED else Severity.WARNING,
            stack=self.stack,
            data={"apply": result.apply_id, "state": state, "revision": revision},
        )
        self.metrics.sync_total.labels(self.stack, str(state)).inc()
        records = {r.key: r for r in self.store.list_resources(stack=self.stack)}
        pending = set()
        if result.report.interrupted:
            pending = {r.action.key for r in result.report.reports.values() if r.state is not Outcome.SUCCEEDED}
        status = self._record(
            records,
            documents,
            revision,
            snapshot,
            excluded=excluded,
            drift={k: v for k, v in drift.items() if k in excluded or k in failed},
            plan=plan,
            failed=failed,
            pending=pending,
            apply_id=result.apply_id,
            result=str(state),
        )
        outcome = "applied" if state == ApplyState.SUCCEEDED else str(state)
        cold = whole_after(plan.changes, len(documents))
        return SyncResult(outcome, status, apply_id=result.apply_id, cold=cold)

    def _count_plan(self) -> None:
        how = "whole" if self.controller.last_replan is None else "incremental"
        self.metrics.plans_total.labels(self.stack, how).inc()

    def warm(self, snapshot: Snapshot) -> None:
        """Plan ``snapshot`` once, for nothing but the trace the controller keeps of it: after an apply that created,
        deleted or changed much, the next plan would otherwise be made whole (``planning.incremental``), and the
        next edit would wait for it. Nothing is written; a plan that fails is left for the next sync to report."""
        if snapshot.documents is None:
            return
        began = time.monotonic()
        try:
            self.controller.plan(snapshot.documents, PlanOptions(self.stack, prune=self.prune))
            self._count_plan()
        except (PlanError, DatabaseError, DriverError, OSError) as error:
            log.debug("planner of stack %s not warmed: %s", self.stack, error)
            return
        log.debug("planner of stack %s warmed in %.3fs", self.stack, time.monotonic() - began)

    # --- drift ----------------------------------------------------------------------------------------------

    def _drift(
        self, plan: Plan, records: Mapping[ResourceKey, ResourceRecord], documents: Mapping[ResourceKey, object]
    ) -> dict[ResourceKey, str]:
        """Resources changed outside nebctl whose manifests did not change since they were applied: what
        self-heal corrects and report-only reports. Value: what changed, in the plan's words."""
        drift: dict[ResourceKey, str] = {}
        for change in plan.changes:
            if not change.is_change or not change.drift:
                continue
            record = records.get(change.key)
            document = documents.get(change.key)
            if record is None or document is None:
                continue
            if record.desired_hash != spec_hash(spec_document(document)):  # type: ignore[arg-type]
                continue  # the manifest moved too: that is a change to apply, in either mode
            drift[change.key] = "; ".join(item.message for item in change.drift)
        return drift

    def _report_drift(self, drift: Mapping[ResourceKey, str]) -> None:
        for key in sorted(set(drift) - self._reported, key=str):
            action = "it will be corrected" if self.self_heal else "it is only reported (report-only)"
            self.events.emit(
                "drift.detected",
                f"{key} {drift[key]}; {action}",
                severity=Severity.WARNING,
                key=key,
                stack=self.stack,
                data={"drift": drift[key], "self_heal": self.self_heal},
            )
        self._reported = set(drift)

    def _heal_outcomes(
        self, result: ApplyResult, plan: Plan, drift: Mapping[ResourceKey, str], excluded: set[ResourceKey]
    ) -> dict[ResourceKey, str]:
        """Record how each heal went: healed, or failed (backoff, then degraded). Returns the resources whose
        actions failed (heals or not), with the error."""
        failed: dict[ResourceKey, str] = {}
        states: dict[ResourceKey, set[Outcome]] = {}
        for report in result.report.reports.values():
            key = report.action.key
            states.setdefault(key, set()).add(report.state)
            if report.state in (Outcome.FAILED, Outcome.SKIPPED) and key not in failed:
                failed[key] = report.error or f"blocked by {report.blocked_by}"
        acted = {c.key for c in plan.changes if c.is_change}
        for key in sorted(set(drift) - excluded, key=str):
            if key not in acted:
                continue
            if key in failed:
                attempts = self.backoff.failed(key, self.clock())
                retry_in = attempts.next_at - self.clock()
                self.events.emit(
                    "drift.heal_failed",
                    f"{key} could not be healed ({failed[key]}); attempt {attempts.failures}, next in {retry_in:.0f}s",
                    severity=Severity.WARNING,
                    key=key,
                    stack=self.stack,
                    data={"failures": attempts.failures, "retry_in": round(retry_in, 3), "error": failed[key]},
                )
                if attempts.failures >= self.serve.degraded_after and key not in self._degraded:
                    self._degraded[key] = f"{attempts.failures} heals failed; last: {failed[key]}"
                    self.events.emit(
                        "resource.degraded",
                        f"{key} is degraded: {attempts.failures} heals in a row failed; retrying every "
                        f"{self.backoff.delay(attempts.failures):.0f}s at most",
                        severity=Severity.ERROR,
                        key=key,
                        stack=self.stack,
                        data={"failures": attempts.failures},
                    )
                elif key in self._degraded:
                    self._degraded[key] = f"{attempts.failures} heals failed; last: {failed[key]}"
            elif states.get(key, set()) <= {Outcome.SUCCEEDED}:
                self.backoff.reset(key)
                self._degraded.pop(key, None)
                self._reported.discard(key)
                self.events.emit(
                    "drift.healed",
                    f"{key} healed: it {drift[key]}",
                    key=key,
                    stack=self.stack,
                    data={"drift": drift[key]},
                )
        return failed

    def _timed(self, changes: Sequence[Change]) -> None:
        """The executor's change callback: times each driver action for the metrics."""
        now = time.monotonic()
        for change in changes:
            action = change.action
            if change.state is Outcome.RUNNING:
                self._started.setdefault(action.id, now)
            elif change.state in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELLED):
                begun = self._started.pop(action.id, None)
                if begun is not None:
                    self.metrics.action_duration.labels(
                        action.family.value, action.operation, change.state.value
                    ).observe(now - begun)

    # --- status -------------------------------------------------------------------------------------------

    def _invalid(self, snapshot: Snapshot, revision: str | None) -> SyncResult:
        if snapshot.problems != self._problems:
            count = len(snapshot.problems)
            self.events.emit(
                "source.invalid",
                f"the manifests of stack {self.stack} are invalid ({count} problem{'s' if count != 1 else ''}); "
                "nothing is applied until they are valid again",
                severity=Severity.ERROR,
                stack=self.stack,
                data={"problems": list(snapshot.problems)},
            )
        self._problems = snapshot.problems
        self._save_status(
            SyncStatus.UNKNOWN,
            revision,
            snapshot,
            message="the manifests are invalid; nothing is applied until they are valid again",
            problems=snapshot.problems,
        )
        self.metrics.sync_total.labels(self.stack, "invalid").inc()
        return SyncResult("invalid", SyncStatus.UNKNOWN)

    def _plan_error(self, problems: Sequence[str], revision: str | None) -> SyncResult:
        if tuple(problems) != self._problems:
            self.events.emit(
                "sync.failed",
                f"the plan of stack {self.stack} cannot be made; nothing was changed",
                severity=Severity.ERROR,
                stack=self.stack,
                data={"problems": list(problems)},
            )
        self._problems = tuple(problems)
        self._save_status(
            SyncStatus.DEGRADED, revision, None, message="the plan cannot be made", problems=tuple(problems)
        )
        self.metrics.sync_total.labels(self.stack, "plan-error").inc()
        return SyncResult("plan-error", SyncStatus.DEGRADED)

    def _record(
        self,
        records: Mapping[ResourceKey, ResourceRecord],
        documents: Mapping[ResourceKey, object],
        revision: str | None,
        snapshot: Snapshot,
        *,
        excluded: set[ResourceKey],
        drift: Mapping[ResourceKey, str],
        plan: Plan,
        failed: Mapping[ResourceKey, str] | None = None,
        pending: set[ResourceKey] | None = None,
        apply_id: int | None = None,
        result: str | None = None,
    ) -> SyncStatus:
        now = self.clock()
        backing_off = {}
        for key in self.backoff.tracked():
            attempts = self.backoff.get(key)
            if attempts is not None and key in drift:
                backing_off[key] = (
                    f"{drift[key]}; {attempts.failures} heal(s) failed, next in {max(0.0, attempts.next_at - now):.0f}s"
                )
        reported = {k: f"changed outside nebctl: {v}" for k, v in drift.items() if k in excluded and not self.self_heal}
        unmanaged = {c.key for c in plan.changes if c.is_change and c.key not in excluded} if result is None else set()
        health = resource_health(
            HealthFacts(
                resources=sorted(set(records) | set(documents), key=str),
                hosts={k: r.host for k, r in records.items() if k.kind is Kind.VIRTUAL_MACHINE},
                degraded=self._degraded,
                backing_off=backing_off,
                reported=reported,
                unknown={item.key for item in plan.drift if item.correction is None},  # not a refused repair
                failed={k: v for k, v in (failed or {}).items() if k not in drift},
                pending=(pending or set()) | unmanaged,
                hosts_in_error=self.hosts_in_error(),
            )
        )
        status = stack_status(value for value, _ in health.values())
        attempts_of = {key: self.backoff.get(key) for key in self.backoff.tracked()}
        self.store.save_resource_health(
            self.stack,
            [
                ResourceHealthRecord(
                    kind=key.kind,
                    namespace=key.namespace,
                    name=key.name,
                    stack=self.stack,
                    health=value.value,
                    message=message,
                    failures=attempts.failures if (attempts := attempts_of.get(key)) else 0,
                    next_attempt_at=datetime.fromtimestamp(attempts.next_at, UTC) if attempts else None,
                )
                for key, (value, message) in health.items()
            ],
        )
        counts = Counter(value for value, _ in health.values())
        message = ", ".join(f"{count} {value}" for value, count in sorted(counts.items())) or "no resources"
        self._save_status(status, revision, snapshot, message=message, apply_id=apply_id, result=result, synced=True)
        return status

    def _save_status(
        self,
        status: SyncStatus,
        revision: str | None,
        snapshot: Snapshot | None,
        *,
        message: str | None = None,
        problems: tuple[str, ...] = (),
        apply_id: int | None = None,
        result: str | None = None,
        synced: bool = False,
    ) -> None:
        previous = self.store.stack_status(self.stack)
        source = dict(self.source)
        if snapshot is not None and snapshot.revision is not None:
            commit = snapshot.revision
            source["commit"] = {
                "sha": commit.sha,
                "author": commit.author,
                "subject": commit.subject,
                "dirty": commit.dirty,
            }
        self.store.save_stack_status(
            StackStatusRecord(
                stack=self.stack,
                sync_status=status.value,
                revision=revision,
                source=source,
                message=message,
                problems=problems,
                last_sync_at=datetime.fromtimestamp(self.clock(), UTC)
                if synced
                else (previous.last_sync_at if previous else None),
                last_sync_result=result or (previous.last_sync_result if previous and not synced else None),
                last_apply_id=apply_id or (previous.last_apply_id if previous else None),
            )
        )
        self.metrics.set_stack_info(self.stack, status.value, revision)
