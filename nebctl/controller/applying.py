"""The reconciliation loop of one invocation: observe, plan, and apply with a durable journal.

``Controller`` is the I/O shell around the pure planner and the executor: it reads the records (the database),
observes the hosts (monitoring drivers), makes the plan, and when applying it journals every action in the
database and updates each resource's record in the same transaction as the action that changed it. A
resource's ``applied`` spec is written only when all its actions have succeeded, so after a crash the next plan
sees the resource as unfinished and completes it; deterministic identities make the repeated actions find what
was already done. Used by the CLI (``diff``, ``apply``, ``destroy``) and, later, the service.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nebctl.controller.executing import Change, ExecutionReport, Executor, Outcome, RetryPolicy
from nebctl.controller.hooking import HookDispatcher
from nebctl.controller.observing import CustomAttributes, DriverSource, known_hosts, observations, observe
from nebctl.controller.planning import PlanError, PlanRequest, QuotaLimit, plan_with_specs, references
from nebctl.controller.plans import Action, ChangeType, Plan, ResourceChange
from nebctl.controller.reaping import ProgramRecorder
from nebctl.controller.sampling import record_observation
from nebctl.controller.settings import Settings
from nebctl.controller.sourcing import ImageSources, LocalImage
from nebctl.database.errors import DatabaseError
from nebctl.database.records import (
    ActionRecord,
    ActionUpdate,
    ApplyState,
    EventRecord,
    HistoryOpening,
    ResourceRecord,
    RevisionRecord,
    Severity,
)
from nebctl.database.sealing import SECRET_PATHS, KeyRing, SecretKeyError, has_clear_secret, reveal_spec
from nebctl.database.store import Batch, Store
from nebctl.drivers.errors import PermanentError
from nebctl.drivers.protocols import HookDriver
from nebctl.drivers.types import Appliance, Family, HostRef
from nebctl.reconcilers.base import HostDrivers, LiveView, RecordView
from nebctl.reconcilers.catalogue import RECONCILERS
from nebctl.reconcilers.vm import deposition, disk_total
from nebctl.schemas.keys import Kind, ResourceKey
from nebctl.schemas.models import AnyManifest, Hook, spec_document

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanOptions:
    stack: str
    prune: bool = False
    targets: frozenset[ResourceKey] = frozenset()
    excludes: frozenset[ResourceKey] = frozenset()


@dataclass(frozen=True)
class PlannedApply:
    """A plan together with what it was made from, ready to be applied."""

    plan: Plan
    request: PlanRequest
    hosts: Mapping[str, tuple[HostRef, Any]]
    final_specs: Mapping[ResourceKey, dict[str, Any]]  # the spec each changed resource has once applied
    # Records whose secrets an older key sealed: the apply writes them again, sealed with the current key.
    resealed: Sequence[ResourceRecord] = ()


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


def _imports_again(
    key: ResourceKey, documents: Mapping[ResourceKey, AnyManifest], records: Mapping[ResourceKey, ResourceRecord]
) -> bool:
    """Whether an Image of the manifests will be imported (it is new, or its source changed): only those have
    their marketplace appliance checked while planning, so an unreachable catalogue blocks nothing else."""
    if key.kind is not Kind.IMAGE:
        return False
    record = records.get(key)
    if record is None or record.applied is None:
        return True
    return record.applied.get("source") != spec_document(documents[key]).get("source")


class Controller:
    def __init__(
        self,
        *,
        store: Store,
        registry: DriverSource,
        settings: Settings,
        host_attributes: CustomAttributes | None = None,
    ) -> None:
        """``host_attributes`` gives each host's custom probe attributes; by default the programs of
        ``settings.probes_dir`` run at each observation (the service hands in its cache of their results)."""
        self.store = store
        self.registry = registry
        self.settings = settings
        if host_attributes is None and settings.probes_dir is not None:
            from nebctl.controller.probing import CustomProbes

            host_attributes = CustomProbes(settings.probes_dir, timeout=settings.serve.probe_timeout)
        self.host_attributes = host_attributes

    # --- planning ----------------------------------------------------------------------------------------------

    def plan(self, documents: Mapping[ResourceKey, AnyManifest], options: PlanOptions) -> PlannedApply:
        records, resealed = reveal_records(self.store.list_resources(), documents, self.store.secrets)
        own = {key: record for key, record in records.items() if record.stack == options.stack}
        hosts = known_hosts(documents, own)
        live = observe(hosts, self.registry, parallelism=self.settings.parallelism, custom=self.host_attributes)
        self._record_observations(records, live)
        request = PlanRequest(
            stack=options.stack,
            documents=documents,
            records=records,
            live=live,
            prune=options.prune,
            targets=options.targets,
            excludes=options.excludes,
            quotas=[
                QuotaLimit(q.scope, vms=q.vms, vcpu=q.vcpu, memory=q.memory, disk=q.disk)
                for q in self.store.list_quotas()
                if q.scope_type == "namespace"
            ],
        )
        sources = ImageSources(registry=self.registry, settings=self.settings, documents=documents)
        problems = sources.missing_appliances(key for key in documents if _imports_again(key, documents, own))
        if problems:
            raise PlanError(problems)
        plan, specs = plan_with_specs(request)
        return PlannedApply(plan, request, hosts, specs, resealed)

    def _record_observations(self, records: Mapping[ResourceKey, ResourceRecord], live: LiveView) -> None:
        """Keep what was just probed, for ``get`` and ``describe``, and its samples, for ``hosts`` and ``top`` (each
        one bulk write). Failing to keep them costs the user only a staler view, so it is logged and the plan goes
        on."""
        try:
            self.store.record_observations(observations(records, live), probed=list(live.hosts))
            record_observation(self.store, live, records)  # the samples that hosts and top show
        except DatabaseError as error:
            log.warning("could not record what was observed: %s", error)

    # --- applying ----------------------------------------------------------------------------------------------

    def reseal(self, planned: PlannedApply) -> None:
        """Write again the records whose secrets an older key sealed, sealed with the current key (a key
        rotation completes this way). Only under the writers' lock; ``apply`` does it, and a writer that finds
        nothing to apply calls it directly."""
        if planned.resealed:
            self.store.save_resources(planned.resealed)

    def apply(
        self,
        planned: PlannedApply,
        *,
        parallelism: int | None = None,
        revision: RevisionRecord | None = None,
        stop: threading.Event | None = None,
        cancel: threading.Event | None = None,
        on_change: Callable[[Sequence[Change]], None] | None = None,
        on_resume: Callable[[int, int, int], None] | None = None,
        user: str | None = None,
    ) -> ApplyResult:
        """Execute the plan. The caller holds the writers' lock. ``on_resume(apply_id, done, total)`` is told
        about an earlier apply of this stack that never finished (it is closed as interrupted). ``user`` (the
        system user by default) is recorded as the holder and as the owner of the placements it makes."""
        plan = planned.plan
        stack = plan.stack
        resumed_from = None
        unfinished = self.store.last_unfinished_apply(stack)
        if unfinished is not None:
            actions = self.store.actions_of(unfinished.id)
            done = sum(1 for action in actions if action.state == Outcome.SUCCEEDED)
            self._close_interrupted(unfinished.id, actions, done)
            resumed_from = unfinished.id
            if on_resume is not None:
                on_resume(unfinished.id, done, len(actions))
        self.reseal(planned)
        user = user or getpass.getuser()
        holder = f"{user}@{os.uname().nodename}:{os.getpid()}"
        apply_id = self.store.begin_apply(
            stack=stack, revision=revision.label if revision else None, plan=plan_summary(plan), holder=holder
        )
        if revision is not None:
            self.store.record_revision(apply_id, revision)
        needs = plan.dependencies()
        self.store.journal_actions(
            apply_id,
            [
                ActionRecord(
                    action_id=action.id,
                    kind=action.key.kind,
                    namespace=action.key.namespace,
                    name=action.key.name,
                    family=action.family.value,
                    operation=action.operation,
                    host=action.host,
                    depends_on=tuple(needs[action.id]),
                )
                for action in plan.actions
            ],
        )
        world = ExecutionWorld(
            stack=stack,
            registry=self.registry,
            hosts=planned.hosts,
            documents=planned.request.documents,
            records={k: r for k, r in planned.request.records.items() if r.stack == stack},  # type: ignore[misc]
            shutdown_timeout=self.settings.shutdown_timeout,
            sources=ImageSources(registry=self.registry, settings=self.settings, documents=planned.request.documents),
        )
        programs = ProgramRecorder(self.store)
        hooks = self._hooks(planned, programs)
        journal = StoreJournal(
            self.store, apply_id, planned, world, on_events=hooks.dispatch if hooks else None, owner=user
        )
        journal.begin()
        executor = Executor(
            plan,
            lambda action: RECONCILERS[action.key.kind].realise(action, world),
            journal=journal,
            parallelism=parallelism or self.settings.parallelism,
            retry=RetryPolicy(**self.settings.retry.model_dump()),
            timeout_for=lambda action: self.settings.timeout_for(action.family.value, action.operation),
            stop=stop,
            cancel=cancel,
            on_change=on_change,
            programs=programs,
        )
        report = executor.run()
        state = _apply_state(report)
        self.store.finish_apply(apply_id, state=state, summary=report_summary(report, plan))
        finished = EventRecord(
            type="apply.finished" if state == ApplyState.SUCCEEDED else f"apply.{state}",
            severity=Severity.INFO if state == ApplyState.SUCCEEDED else Severity.ERROR,
            message=f"apply #{apply_id} of stack {stack} {state}",
            stack=stack,
            data=report_summary(report, plan),
        )
        identifier = self.store.add_event(finished)
        if hooks is not None:
            hooks.dispatch([event_payload(finished, identifier)])
            hooks.wait()
        return ApplyResult(apply_id, report, resumed_from, state)

    def _hooks(self, planned: PlannedApply, programs: ProgramRecorder) -> HookDispatcher | None:
        """The dispatcher of the manifests' hooks, through the hooks driver (``exec`` runs real programs)."""
        hooks = {key: doc for key, doc in planned.request.documents.items() if isinstance(doc, Hook)}
        if not hooks:
            return None
        name = str(self.settings.drivers.get("hooks", {}).get("driver", "exec"))
        driver: HookDriver = self.registry.get(Family.HOOKS, name)
        return HookDispatcher(store=self.store, driver=driver, hooks=hooks, programs=programs)

    def _close_interrupted(self, apply_id: int, actions: Sequence[ActionRecord], done: int) -> None:
        """Close an apply whose process died. Its journal would otherwise keep actions pending or running
        forever; they are closed as cancelled (the outcome of one that was running is whatever the hosts now
        report, which the new plan was made from), together with the apply, in one transaction."""
        with self.store.batch() as tx:
            for action in actions:
                if action.state == Outcome.RUNNING:
                    error = f"interrupted while running: the process of apply #{apply_id} died"
                elif action.state == Outcome.PENDING:
                    error = f"not started: the process of apply #{apply_id} died"
                else:
                    continue
                tx.update_action(apply_id, action.action_id, state=Outcome.CANCELLED.value, error=error)
            tx.finish_apply(apply_id, state=ApplyState.INTERRUPTED, summary={"resumed": True, "done": done})


def reveal_records(
    records: Sequence[ResourceRecord], documents: Mapping[ResourceKey, AnyManifest], ring: KeyRing
) -> tuple[dict[ResourceKey, ResourceRecord], list[ResourceRecord]]:
    """The records by key, with each stored secret digest that the manifests' value matches replaced by that
    value (``database.sealing``), so the planner sees a secret as changed exactly when it changed; and those to
    write again: digests an older key made, secrets an older nebctl stored in clear. ``PlanError`` names every
    record sealed with a key not in ``ring``."""
    revealed: dict[ResourceKey, ResourceRecord] = {}
    resealed: list[ResourceRecord] = []
    problems: list[str] = []
    for record in records:
        key = record.key
        document = documents.get(key)
        if document is None or key.kind not in SECRET_PATHS:
            revealed[key] = record
            if has_clear_secret(key.kind, record.applied) or has_clear_secret(key.kind, record.desired):
                resealed.append(record)  # stored in clear by an older nebctl: the next writer seals it
            continue
        clear = spec_document(document)
        try:
            applied = reveal_spec(key.kind, record.applied, clear, ring)
            desired = reveal_spec(key.kind, record.desired, clear, ring)
        except SecretKeyError as error:
            problems.append(
                f"{key}: {error}; put that key back in the key file (below the current key) to compare the "
                "manifests' secrets with what was applied"
            )
            continue
        clear_record = dataclasses.replace(record, applied=applied.spec, desired=desired.spec)
        revealed[key] = clear_record
        if applied.stale or desired.stale:
            resealed.append(clear_record)
    if problems:
        raise PlanError(problems)
    return revealed, resealed


def _apply_state(report: ExecutionReport) -> str:
    if report.interrupted:
        return ApplyState.INTERRUPTED
    if report.ok:
        return ApplyState.SUCCEEDED
    if report.with_state(Outcome.SUCCEEDED):
        return ApplyState.PARTIAL
    return ApplyState.FAILED


@dataclass
class ExecutionWorld:
    """``reconcilers.base.World`` over the registry, the plan's documents and the records being updated."""

    stack: str
    registry: DriverSource
    hosts: Mapping[str, tuple[HostRef, Any]]
    documents: Mapping[ResourceKey, AnyManifest]
    records: dict[ResourceKey, ResourceRecord]
    shutdown_timeout: float
    sources: ImageSources
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _drivers: dict[str, HostDrivers] = field(default_factory=dict)

    def drivers(self, host: str) -> HostDrivers:
        # Resolved once per host, not per action: the registry shares each driver anyway, and resolving (the
        # host's overrides dumped, four lookups under the registry's lock) was a share of every action's time.
        with self._lock:
            drivers = self._drivers.get(host)
        if drivers is None:
            ref, overrides = self._host(host)
            drivers = self.registry.for_host(ref, overrides)
            with self._lock:
                self._drivers[host] = drivers
        return drivers

    def host_ref(self, host: str) -> HostRef:
        return self._host(host)[0]

    def _host(self, host: str) -> tuple[HostRef, Any]:
        try:
            return self.hosts[host]
        except KeyError:
            raise PermanentError(f"host {host!r} is neither in the manifests nor recorded") from None

    def desired(self, key: ResourceKey) -> AnyManifest | None:
        return self.documents.get(key)

    def record(self, key: ResourceKey) -> RecordView | None:
        with self._lock:
            return self.records.get(key)

    def appliance(self, marketplace: str, app: str, version: str | None = None) -> Appliance:
        return self.sources.appliance(marketplace, app, version)

    def fetch_image(self, source: str, *, sha256: str | None, size: int | None = None) -> LocalImage:
        return self.sources.fetch_image(source, sha256=sha256, size=size)


class StoreJournal:
    """The executor's journal in the database: each round of changes is one transaction, which also updates
    the records of the resources those actions changed, and finalises a resource when all its actions are
    done. Within a round, the action updates, the record upserts and the events are each written with one
    bulk statement: the journal sits on the executor's critical path."""

    def __init__(
        self,
        store: Store,
        apply_id: int,
        planned: PlannedApply,
        world: ExecutionWorld,
        on_events: Callable[[Sequence[dict[str, Any]]], None] | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.on_events = on_events
        self.owner = owner
        self.emitted: list[dict[str, Any]] = []
        # What the current round will write, in bulk, when it ends.
        self._updates: list[ActionUpdate] = []
        self._dirty: dict[ResourceKey, ResourceRecord] = {}
        self._deleted: list[ResourceKey] = []
        self._events: list[EventRecord] = []
        self._placements: list[HistoryOpening] = []
        self.apply_id = apply_id
        self.planned = planned
        self.world = world
        self.changes = {change.key: change for change in planned.plan.changes}
        self.remaining: dict[ResourceKey, int] = defaultdict(int)
        self.failed: set[ResourceKey] = set()
        for action in planned.plan.actions:
            self.remaining[action.key] += 1
        # Deletions with no action of their own (a host's record, say) wait for the actions that still need the
        # record: ``holding`` maps each such action to the records it holds, ``waiting`` counts per record.
        self.holding: dict[str, list[ResourceKey]] = defaultdict(list)
        self.waiting: dict[ResourceKey, int] = {}
        self._users: dict[ResourceKey, list[str]] | None = None  # the actions that need each record

    def begin(self) -> None:
        """Record the changes that need no driver action (labels, hooks...), and mark deletions in progress, so
        that an interrupted deletion is finished by the next apply even without --prune. Depose the old VMs of
        create-first replacements first, as the plan was made for."""
        with self.store.batch() as tx:
            plan = self.planned.plan
            summary = plan.summary
            counts = {"add": summary.add, "change": summary.change, "destroy": summary.destroy}
            message = f"apply #{self.apply_id} of stack {plan.stack} started: {summary}"
            self._event(tx, type="apply.started", message=message, data={**counts, "actions": len(plan.actions)})
            # In the plan's order (by key), each deposed key taken once chosen: as the planner chose them.
            taken = set(self.planned.request.records)
            for change in self.planned.plan.changes:
                if change.create_first:
                    taken.add(self._depose(tx, change, taken))
            for change in self.planned.plan.changes:
                if not change.is_change:
                    continue
                if self.remaining[change.key] == 0 and change.type is ChangeType.DELETE and self._hold(change.key):
                    record = self._record(change.key)
                    self._save(tx, dataclasses.replace(record, status="deleting"))
                elif self.remaining[change.key] == 0:
                    self._finalise(tx, change)
                elif change.type is ChangeType.DELETE:
                    record = self._record(change.key)
                    self._save(tx, dataclasses.replace(record, status="deleting"))
            self._write_round(tx)
        self._pass_events()

    def _hold(self, key: ResourceKey) -> bool:
        """Make the record of ``key``, deleted with no action of its own, wait for every action of this plan
        that still needs it; whether there is one. A host's record is how every action on that host reaches it,
        and a resource's record is what the resources that refer to it are undone with: deleted first, a
        destroy that stops midway (a crash, a failed action) could not be finished by the next one."""
        if self._users is None:  # built once, for the few records deleted without an action
            self._users = defaultdict(list)
            for action in self.planned.plan.actions:
                if action.host is not None:
                    self._users[ResourceKey.of(Kind.HOST, action.host)].append(action.id)
            acting = {action.key for action in self.planned.plan.actions}
            by_key = defaultdict(list)
            for action in self.planned.plan.actions:
                by_key[action.key].append(action.id)
            for other in acting:
                record = self.world.records.get(other)
                for ref in references(other, record.applied if record is not None else None):
                    if ref != other:
                        self._users[ref].extend(by_key[other])
        actions = list(dict.fromkeys(self._users.get(key, ())))
        for action_id in actions:
            self.holding[action_id].append(key)
        if actions:
            self.waiting[key] = len(actions)
        return bool(actions)

    def _release(self, tx: Batch, action_id: str) -> None:
        """An action that needed records deleted with no action of their own has succeeded: delete those that
        nothing else needs any more."""
        for key in self.holding.pop(action_id, ()):
            self.waiting[key] -= 1
            if self.waiting[key] == 0:
                del self.waiting[key]
                self._finalise(tx, self.changes[key])

    def _depose(self, tx: Batch, change: ResourceChange, taken: set[ResourceKey]) -> ResourceKey:
        """Split the record of a VM replaced create-first: the old VM moves to a deposed record, being deleted
        (its deletion waits in the plan for the new VM), and the VM's record starts again from the next
        incarnation, as a create. Written before any action runs, so whenever this apply stops, the next plan
        finishes the new VM and deletes the old one, and nothing mistakes one for the other."""
        key = change.key
        record = self._record(key)
        deposed, deposed_live, successor_live = deposition(key, record.live, taken)
        self._save(tx, dataclasses.replace(record, name=deposed.name, status="deleting", live=deposed_live))
        successor = dataclasses.replace(
            record, applied=None, applied_hash=None, live=successor_live, status="creating", host=change.host
        )
        self._save(tx, successor)
        self._event(
            tx,
            type="vm.deposed",
            message=f"{key} is replaced create-first: its old VM is kept as {deposed} until the new one runs",
            key=key,
            data={"deposed": deposed.name, "incarnation": successor_live["incarnation"]},
        )
        return deposed

    def record(self, changes: Sequence[Change]) -> None:
        with self.store.batch() as tx:
            now = tx._now()
            for change in changes:
                self._journal(tx, change, now)
            self._write_round(tx)
        self._pass_events()

    def _write_round(self, tx: Batch) -> None:
        tx.update_actions(self.apply_id, self._updates)
        if self._dirty:
            tx.save_resources(list(self._dirty.values()))
        for key in self._deleted:
            tx.delete_resource(key)
        tx.open_histories(self._placements)
        if self.on_events is None:
            tx.append_events(self._events)  # no hook to hand them to: their ids are not needed
        else:
            ids = tx.add_events(self._events)
            self.emitted += [
                event_payload(event, identifier) for event, identifier in zip(self._events, ids, strict=True)
            ]
        self._updates, self._dirty, self._deleted, self._events, self._placements = [], {}, [], [], []

    def _event(self, tx: Batch, *, type: str, message: str, key: ResourceKey | None = None, **fields: Any) -> None:
        """Add an event to this round; it reaches the hooks once the round's transaction has committed."""
        kind, namespace, name = key if key is not None else (None, None, None)
        self._events.append(
            EventRecord(
                type=type,
                message=message,
                severity=fields.get("severity", Severity.INFO),
                kind=kind,
                namespace=namespace,
                name=name,
                stack=self.planned.plan.stack,
                data=fields.get("data", {}),
            )
        )

    def _pass_events(self) -> None:
        events, self.emitted = self.emitted, []
        if events and self.on_events is not None:
            self.on_events(events)

    def _journal(self, tx: Batch, change: Change, now: datetime) -> None:
        action = change.action
        self._updates.append(
            ActionUpdate(
                action_id=action.id,
                state=change.state.value,
                attempts=change.attempts or None,
                error=change.error,
                result=dict(change.result) if change.result is not None else None,
                # A running change with a result is progress of an attempt already started (a download).
                started_at=now
                if change.state is Outcome.RUNNING and change.attempts == 1 and change.result is None
                else None,
                finished_at=now if change.state in (Outcome.SUCCEEDED, Outcome.FAILED) else None,
            )
        )
        key = action.key
        resource_change = self.changes[key]
        if change.state in (Outcome.SUCCEEDED, Outcome.SKIPPED, Outcome.CANCELLED):
            forced = change.state is Outcome.SUCCEEDED and bool((change.result or {}).get("forced"))
            self._event(
                tx,
                type=f"action.{change.state.value}",
                severity=Severity.INFO if change.state is Outcome.SUCCEEDED and not forced else Severity.WARNING,
                message=action.description
                + (": forced off, the guest did not stop within the shutdown timeout" if forced else "")
                + (f" (blocked by {change.blocked_by})" if change.blocked_by else "")
                + (f": {change.error}" if change.error and change.state is Outcome.CANCELLED else ""),
                key=key,
                data={"action": action.id, "attempts": change.attempts},
            )
        if change.state is Outcome.SUCCEEDED:
            record = self._record(key)
            live = dict(record.live)
            host = record.host
            for name, value in (change.result or {}).items():
                if name == "host":
                    host = value
                if value is None:
                    live.pop(name, None)
                else:
                    live[name] = value
            status = {ChangeType.DELETE: "deleting", ChangeType.CREATE: "creating"}.get(
                resource_change.type, "updating"
            )
            if key.kind is Kind.VIRTUAL_MACHINE and host is None:
                host = resource_change.host
            self._save(tx, dataclasses.replace(record, live=live, host=host, status=status))
            self.remaining[key] -= 1
            if self.remaining[key] == 0 and key not in self.failed:
                self._finalise(tx, resource_change)
            if self.holding:
                self._release(tx, action.id)
        elif change.state is Outcome.FAILED:
            self.failed.add(key)
            record = self._record(key)
            self._save(tx, dataclasses.replace(record, status="failed"))
            self._event(
                tx,
                type=f"{key.kind.short}.failed",
                severity=Severity.ERROR,
                message=f"{action.description}: {change.error}",
                key=key,
                data={"action": action.id, "attempts": change.attempts},
            )
        elif change.state is Outcome.PENDING and change.retry_in is not None:
            self._event(
                tx,
                type="action.retry",
                severity=Severity.WARNING,
                message=f"{action.description}: {change.error}; retrying in {change.retry_in:.1f}s",
                key=key,
            )

    def _record(self, key: ResourceKey) -> ResourceRecord:
        record = self.world.records.get(key)
        if record is None:
            record = ResourceRecord(
                kind=key.kind, namespace=key.namespace, name=key.name, stack=self.planned.plan.stack, status="creating"
            )
        return record

    def _save(self, tx: Batch, record: ResourceRecord) -> None:
        self._dirty[record.key] = record
        with self.world._lock:
            self.world.records[record.key] = record

    def _finalise(self, tx: Batch, change: ResourceChange) -> None:
        key = change.key
        stack = self.planned.plan.stack
        if change.type is ChangeType.DELETE:
            self._dirty.pop(key, None)
            self._deleted.append(key)
            with self.world._lock:
                self.world.records.pop(key, None)
            if key.kind is Kind.VIRTUAL_MACHINE:
                tx.close_history(key, reason=PlacementReason.DELETED)
            self._event(tx, type=f"{key.kind.short}.deleted", message=f"{key} deleted", key=key)
            return
        record = self._record(key)
        spec = self.planned.final_specs.get(key)
        document = self.planned.request.documents[key]
        desired = spec_document(document)
        host = record.host
        if key.kind is Kind.VIRTUAL_MACHINE and spec is not None:
            host = spec.get("host") or host
        state = spec.get("state") if spec is not None and key.kind is Kind.VIRTUAL_MACHINE else None
        updated = dataclasses.replace(
            record,
            desired=desired,
            desired_hash=spec_hash(desired),
            applied=spec,
            applied_hash=spec_hash(spec),
            generation=record.generation + 1,
            status=str(state or "ready"),
            host=host,
        )
        self._save(tx, updated)
        verb = {ChangeType.CREATE: "created", ChangeType.REPLACE: "replaced"}.get(change.type, "updated")
        self._event(tx, type=f"{key.kind.short}.{verb}", message=f"{key} {verb}", key=key)
        if change.type is ChangeType.UPDATE and change.previous_host not in (None, host):
            message = f"{key} migrated from {change.previous_host} to {host}"
            self._event(tx, type=f"{key.kind.short}.migrated", message=message, key=key)
        if key.kind is Kind.VIRTUAL_MACHINE and spec is not None and host:
            reason = placement_reason(change, str(host))
            if reason is not None:
                # Written with the round's other placements, in one statement (``_write_round``).
                self._placements.append(
                    HistoryOpening(
                        key,
                        host=str(host),
                        vcpu=int(spec["vcpu"]),
                        memory=int(spec["memory"]),
                        disk=disk_total(spec),
                        reason=reason,
                        stack=stack,
                        state=str(spec.get("state") or "running"),
                        owner=self.owner,
                    )
                )
            if state:
                self._event(tx, type=f"vm.{state}", message=f"{key} is {state} on {host}", key=key)


class PlacementReason:
    """Why a placement record opens (``reason``) or closes (``end_reason``): the vocabulary of the accounting
    history, shared by the executor and ``nebctl accounting``."""

    CREATED = "created"
    REPLACED = "replaced"
    MIGRATED = "migrated"
    RESIZED = "resized"
    STARTED = "started"
    STOPPED = "stopped"
    SUSPENDED = "suspended"
    DELETED = "deleted"


def placement_reason(change: ResourceChange, host: str) -> str | None:
    """The reason a finished change of a VM starts a new placement record, or None when the record goes on.

    A creation, a replacement, a move to another host, a new size (vCPUs, memory, disks) and a change of state
    (running, stopped, suspended) each split the record, so that every record has one host, one size and one
    state. When several happen at once, the first of that order names the split."""
    if change.type is ChangeType.CREATE:
        return PlacementReason.CREATED
    if change.type is ChangeType.REPLACE:
        return PlacementReason.REPLACED
    if change.previous_host not in (None, host):
        return PlacementReason.MIGRATED
    # The fields are asked last: a created VM's fields are listed only when something asks for them.
    paths = [f.path for f in change.fields]
    if any(path in ("vcpu", "memory") or path.startswith("disks") for path in paths):
        return PlacementReason.RESIZED
    for item in change.fields:
        if item.path == "state":
            state = str(item.after)
            return {"running": PlacementReason.STARTED, "suspended": PlacementReason.SUSPENDED}.get(
                state, PlacementReason.STOPPED
            )
    return None


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


def action_of(plan: Plan, action_id: str) -> Action:
    for action in plan.actions:
        if action.id == action_id:
            return action
    raise KeyError(action_id)
