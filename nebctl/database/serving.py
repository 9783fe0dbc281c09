"""Store operations of the reconciliation service: stacks' sync status, resources' health, sync requests and
the revision each apply applied.

Mixed into ``Store`` and ``Batch``. The service writes them (``controller.serving``); ``nebctl status`` reads
them whether the service runs or not, ``nebctl sync`` leaves a request that the running service takes, and the
apply paths (the CLI's and the service's) record the commit they applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, insert, select, update

from nebctl.core.keys import Kind
from nebctl.database.models import Apply, ApplyRevision, Resource, ResourceHealth, StackStatus
from nebctl.database.operating import AnyRow, Operations, table, upsert
from nebctl.database.records import (
    ResourceHealthRecord,
    ResourceSummary,
    RevisionRecord,
    StackStatusRecord,
    SyncStatus,
)

_status = table(StackStatus)
_health = table(ResourceHealth)
_revisions = table(ApplyRevision)
_applies = table(Apply)
_resources = table(Resource)

# Every column the service writes; ``sync_requested_at`` is written only by a request and cleared when taken.
_STATUS_COLUMNS = (
    "sync_status",
    "revision",
    "source",
    "message",
    "problems",
    "last_sync_at",
    "last_sync_result",
    "last_apply_id",
    "updated_at",
)
_HEALTH_COLUMNS = ("stack", "health", "message", "failures", "next_attempt_at", "updated_at")


def _stack_status(row: AnyRow) -> StackStatusRecord:
    return StackStatusRecord(
        stack=row.stack,
        sync_status=row.sync_status,
        revision=row.revision,
        source=row.source,
        message=row.message,
        problems=tuple(row.problems or ()),
        last_sync_at=row.last_sync_at,
        last_sync_result=row.last_sync_result,
        last_apply_id=row.last_apply_id,
        sync_requested_at=row.sync_requested_at,
        updated_at=row.updated_at,
    )


def _resource_health(row: AnyRow) -> ResourceHealthRecord:
    return ResourceHealthRecord(
        kind=Kind(row.kind),
        namespace=row.namespace,
        name=row.name,
        stack=row.stack,
        health=row.health,
        message=row.message,
        failures=row.failures,
        next_attempt_at=row.next_attempt_at,
        updated_at=row.updated_at,
    )


class ServingOperations(Operations):
    # --- stacks' sync status -------------------------------------------------------------------------------

    def save_stack_status(self, status: StackStatusRecord) -> None:
        """Write a stack's status (a pending sync request is kept)."""
        row: dict[str, Any] = {column: getattr(status, column) for column in _STATUS_COLUMNS}
        row.update(stack=status.stack, problems=list(status.problems), updated_at=self._now())
        with self._write() as connection:
            upsert(connection, _status, [row], conflict=["stack"], update=_STATUS_COLUMNS)

    def stack_status(self, stack: str) -> StackStatusRecord | None:
        with self._read() as connection:
            row = connection.execute(select(_status).where(_status.c.stack == stack)).first()
        return _stack_status(row) if row is not None else None

    def list_stack_statuses(self) -> list[StackStatusRecord]:
        with self._read() as connection:
            return [_stack_status(row) for row in connection.execute(select(_status).order_by(_status.c.stack))]

    def request_sync(self, stack: str) -> datetime:
        """Ask the running service to sync ``stack`` now (it polls for requests); returns the request's time."""
        now = self._now()
        with self._write() as connection:
            changed = connection.execute(
                update(_status).where(_status.c.stack == stack).values(sync_requested_at=now)
            ).rowcount
            if not changed:
                connection.execute(
                    insert(_status).values(
                        stack=stack,
                        sync_status=SyncStatus.UNKNOWN.value,
                        problems=[],
                        sync_requested_at=now,
                        updated_at=now,
                    )
                )
        return now

    def take_sync_requests(self) -> list[str]:
        """The stacks whose sync was requested, each request cleared as it is taken (a request made meanwhile,
        with a later time, stays for the next call)."""
        with self._write() as connection:
            rows = connection.execute(
                select(_status.c.stack, _status.c.sync_requested_at).where(_status.c.sync_requested_at.is_not(None))
            ).all()
            taken = []
            for row in rows:
                cleared = connection.execute(
                    update(_status)
                    .where(_status.c.stack == row.stack, _status.c.sync_requested_at == row.sync_requested_at)
                    .values(sync_requested_at=None)
                ).rowcount
                if cleared:
                    taken.append(str(row.stack))
        return taken

    def records_version(self) -> tuple[Any, ...]:
        """A value that changes whenever a writer changes the records: the newest apply, the number of resources
        and their latest update. The service plans before taking the lock and keeps that plan when this did
        not move by the time it holds the lock."""
        query = select(
            select(func.max(_applies.c.id)).scalar_subquery(),
            select(func.count(_resources.c.id)).scalar_subquery(),
            select(func.max(_resources.c.updated_at)).scalar_subquery(),
        )
        with self._read() as connection:
            row = connection.execute(query).one()
        return tuple(row)

    # --- resources' health ---------------------------------------------------------------------------------

    def save_resource_health(self, stack: str, records: Sequence[ResourceHealthRecord]) -> None:
        """Replace the health of ``stack``'s resources with ``records`` (resources no longer there are dropped)."""
        now = self._now()
        rows = [
            {
                "kind": record.kind.value,
                "namespace": record.namespace,
                "name": record.name,
                "stack": stack,
                "health": record.health,
                "message": record.message,
                "failures": record.failures,
                "next_attempt_at": record.next_attempt_at,
                "updated_at": now,
            }
            for record in records
        ]
        with self._write() as connection:
            keep = {(r["kind"], r["namespace"], r["name"]) for r in rows}
            existing = connection.execute(
                select(_health.c.id, _health.c.kind, _health.c.namespace, _health.c.name).where(
                    _health.c.stack == stack
                )
            ).all()
            gone = [row.id for row in existing if (row.kind, row.namespace, row.name) not in keep]
            if gone:
                connection.execute(delete(_health).where(_health.c.id.in_(gone)))
            upsert(connection, _health, rows, conflict=["kind", "namespace", "name"], update=_HEALTH_COLUMNS)

    def list_resource_health(self, stack: str | None = None) -> list[ResourceHealthRecord]:
        query = select(_health).order_by(_health.c.stack, _health.c.kind, _health.c.namespace, _health.c.name)
        if stack is not None:
            query = query.where(_health.c.stack == stack)
        with self._read() as connection:
            return [_resource_health(row) for row in connection.execute(query)]

    def list_resource_summaries(self, *, stack: str | None = None) -> list[ResourceSummary]:
        """Every resource's key, stack, host, status and health (one outer join), in ``list_resources``' order,
        without reading (and decoding) a spec: many times cheaper than ``list_resources`` for a listing."""
        r, h = _resources.c, _health.c
        joined = _resources.outerjoin(
            _health, (h.kind == r.kind) & (h.namespace == r.namespace) & (h.name == r.name) & (h.stack == r.stack)
        )
        query = select(r.kind, r.namespace, r.name, r.stack, r.host, r.status, h.health, h.message, h.failures)
        query = query.select_from(joined)
        if stack is not None:
            query = query.where(r.stack == stack)
        query = query.order_by(r.kind, r.namespace, r.name)
        with self._read() as connection:
            return [
                ResourceSummary(Kind(kind), namespace, name, owner, host, status, health, message, failures or 0)
                for kind, namespace, name, owner, host, status, health, message, failures in connection.execute(query)
            ]

    def health_counts(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Per stack, per health: how many resources, and how many of them have failed heals (one grouped query,
        for the overview of thousands of resources)."""
        c = _health.c
        failing = func.sum(case((c.failures > 0, 1), else_=0))
        query = select(c.stack, c.health, func.count(), failing).group_by(c.stack, c.health)
        counts: dict[str, dict[str, tuple[int, int]]] = {}
        with self._read() as connection:
            for stack, health, total, failed in connection.execute(query):
                counts.setdefault(stack, {})[health] = (int(total), int(failed or 0))
        return counts

    # --- what each apply applied ---------------------------------------------------------------------------

    def record_revision(self, apply_id: int, revision: RevisionRecord) -> None:
        with self._write() as connection:
            connection.execute(insert(_revisions).values(apply_id=apply_id, **asdict(revision)))

    def apply_revision(self, apply_id: int) -> RevisionRecord | None:
        with self._read() as connection:
            row = connection.execute(select(_revisions).where(_revisions.c.apply_id == apply_id)).first()
        if row is None:
            return None
        return RevisionRecord(
            sha=row.sha, author=row.author, subject=row.subject, dirty=bool(row.dirty), source=row.source
        )
