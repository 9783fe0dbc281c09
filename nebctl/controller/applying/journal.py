"""The executor's journal in the database: every action's state, each resource's record, the events and the
placement history, one transaction per round of changes. A resource's ``applied`` spec is written only when all
its actions have succeeded, so after a crash the next plan sees the resource as unfinished and completes it;
deterministic identities make the repeated actions find what was already done.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from nebctl.controller.applying.executing import Change, Outcome
from nebctl.controller.applying.values import PlannedApply, event_payload, spec_hash
from nebctl.controller.applying.world import ExecutionWorld
from nebctl.controller.planning.request import references
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import ChangeType, ResourceChange
from nebctl.database.records import ActionUpdate, EventRecord, HistoryOpening, ResourceRecord, Severity
from nebctl.database.store import Batch, Store
from nebctl.reconcilers.base import Finished
from nebctl.schemas.models import spec_document


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
        self.reconcilers = planned.request.reconcilers
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
                record = self.world.current(other)
                for ref in references(self.planned.request, other, record.applied if record is not None else None):
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
        deposed, deposed_live, successor_live = self.reconcilers[key.kind].depose(key, record.live, taken)
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
            if host is None and self.reconcilers[key.kind].placed:
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
        record = self.world.current(key)
        if record is None:
            record = ResourceRecord(
                kind=key.kind, namespace=key.namespace, name=key.name, stack=self.planned.plan.stack, status="creating"
            )
        return record

    def _save(self, tx: Batch, record: ResourceRecord) -> None:
        self._dirty[record.key] = record
        self.world.keep(record)

    def _finalise(self, tx: Batch, change: ResourceChange) -> None:
        key = change.key
        stack = self.planned.plan.stack
        if change.type is ChangeType.DELETE:
            self._dirty.pop(key, None)
            self._deleted.append(key)
            self.world.drop(key)
            if self.reconcilers[key.kind].placed:
                tx.close_history(key, reason=PlacementReason.DELETED)
            self._event(tx, type=f"{key.kind.short}.deleted", message=f"{key} deleted", key=key)
            return
        record = self._record(key)
        spec = self.planned.final_specs.get(key)
        document = self.planned.request.documents[key]
        desired = spec_document(document)
        finished = self.reconcilers[key.kind].finished(spec) if spec is not None else Finished()
        host = finished.host or record.host
        state = finished.status
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
        usage = finished.usage
        if usage is not None and host:
            reason = placement_reason(change, str(host))
            if reason is not None:
                # Written with the round's other placements, in one statement (``_write_round``).
                self._placements.append(
                    HistoryOpening(
                        key,
                        host=str(host),
                        vcpu=usage.vcpu,
                        memory=usage.memory,
                        disk=usage.disk,
                        reason=reason,
                        stack=stack,
                        state=usage.state,
                        owner=self.owner,
                        # Set by the VM's deploy on a cloud host: showback prices its hours per instance-hour.
                        instance_type=record.live.get("instanceType"),
                    )
                )
            if state:
                self._event(tx, type=f"{key.kind.short}.{state}", message=f"{key} is {state} on {host}", key=key)


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
    """The reason a finished change of a placed resource starts a new placement record, or None when the record
    goes on.

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
