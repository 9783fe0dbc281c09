"""Store operations on the controller's state: resources, applies, the action journal and the event log.

Mixed into ``Store`` and ``Batch``. The executor journals every action state change through ``update_action``
and, for an action that completes, writes the action, the resource it changed and its events in one
``store.batch()``, so that a crash leaves either all of them or none.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)

from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import direct
from nebctl.database.errors import NotFound
from nebctl.database.models import Apply, ApplyAction, Event, Resource, ResourceObservation
from nebctl.database.operating import AnyRow, Operations, chunks, table, upsert
from nebctl.database.record_rows import (
    RECORD_COLUMNS,
    ROWS_AT_ONCE,
    KnownRows,
    Processors,
    RecordRows,
    RowSummary,
    by_key,
    record_of,
)
from nebctl.database.records import (
    ActionRecord,
    ActionUpdate,
    ApplyRecord,
    ApplyState,
    EventRecord,
    ObservationRecord,
    ResourceRecord,
    Severity,
)
from nebctl.database.sealing import KeyRing, seal_spec
from nebctl.database.versions import RESOURCES, bump

_resources = table(Resource)
_applies = table(Apply)
_actions = table(ApplyAction)
_events = table(Event)
_observations = table(ResourceObservation)

# Rows per INSERT statement in bulk writes: large enough to amortise round trips, small enough for any server.
BULK_CHUNK = 1000

# The executor's journal runs these every round: built once (constructing a statement costs more than its
# execution on SQLite).
_UPDATE_ACTIONS = (
    update(_actions)
    .where(_actions.c.apply_id == bindparam("match_apply"), _actions.c.action_id == bindparam("match_action"))
    .values(
        state=bindparam("new_state"),
        **{
            column: func.coalesce(bindparam(f"new_{column}", type_=_actions.c[column].type), _actions.c[column])
            for column in ("attempts", "error", "result", "started_at", "finished_at")
        },
        term=bindparam("new_term"),
    )
)
_INSERT_EVENTS = insert(_events).returning(_events.c.id, sort_by_parameter_order=True)
_APPEND_EVENTS = insert(_events)


def _resource(row: AnyRow) -> ResourceRecord:
    return record_of(tuple(getattr(row, name) for name in RECORD_COLUMNS))


# What an upsert of a record changes in a row that exists: all but its identity and its creation.
_RESOURCE_UPDATED = tuple(name for name in RECORD_COLUMNS if name not in ("kind", "namespace", "name", "created_at"))


@functools.cache
def _listing(stack: bool, kind: bool, namespace: bool) -> Select[Any]:
    """The query of ``list_resources`` without a page, with a parameter for each filter given: built once for
    each combination, so that ``direct.rows`` prepares it once."""
    columns = _resources.c
    query = select(*(columns[name] for name in RECORD_COLUMNS))
    if stack:
        query = query.where(columns.stack == bindparam("stack"))
    if kind:
        query = query.where(columns.kind == bindparam("kind"))
    if namespace:
        query = query.where(columns.namespace == bindparam("namespace"))
    return query.order_by(columns.kind, columns.namespace, columns.name)


# The query of ``resource_stamps``: every column of each row, the times and JSON columns as stored (a time parsed
# into a datetime costs more than the rest of the row).
# The rows of ``ROWS_AT_ONCE`` keys (a key given more than once where there are fewer): one statement, prepared once.
# Each key is its own condition, which every database answers from the unique index (SQLite scans the whole table
# for a list of row values).
_BY_KEYS = select(*(_resources.c[name] for name in RECORD_COLUMNS)).where(
    or_(
        *(
            and_(
                _resources.c.kind == bindparam(f"kind{index}"),
                _resources.c.namespace == bindparam(f"namespace{index}"),
                _resources.c.name == bindparam(f"name{index}"),
            )
            for index in range(ROWS_AT_ONCE)
        )
    )
)


# The rows a store's ``rows_on_hosts`` reads in one query: the resources placed on up to this many hosts, the
# hosts' own records, and the VMs whose row names no host (their applied spec may: readers fall back on it), few
# (one statement, prepared once; a host given more than once where there are fewer).
_HOSTS_AT_ONCE = 16
_host_names: list[BindParameter[str]] = [bindparam(f"host{index}") for index in range(_HOSTS_AT_ONCE)]
_ON_HOSTS = select(*(_resources.c[name] for name in RECORD_COLUMNS)).where(
    or_(
        _resources.c.host.in_(_host_names),
        and_(_resources.c.kind == Kind.HOST.value, _resources.c.name.in_(_host_names)),
        and_(_resources.c.kind == Kind.VIRTUAL_MACHINE.value, _resources.c.host.is_(None)),
    )
)


class _StoredRows:
    """``record_rows.RowSource`` over a store: the rows of some keys, or every row."""

    def __init__(self, read: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._read = read

    def rows(self, keys: Sequence[ResourceKey]) -> tuple[Sequence[Sequence[Any]], Processors]:
        given: dict[str, str] = {}
        for index in range(ROWS_AT_ONCE):
            key = keys[min(index, len(keys) - 1)]
            given.update({f"kind{index}": key.kind.value, f"namespace{index}": key.namespace, f"name{index}": key.name})
        with self._read() as connection:
            return direct.raw_rows(connection, _BY_KEYS, given)

    def every_row(self) -> tuple[Sequence[Sequence[Any]], Processors]:
        with self._read() as connection:
            return direct.raw_rows(connection, _listing(False, False, False))


_STAMPS = select(
    _resources.c.kind,
    _resources.c.namespace,
    _resources.c.name,
    _resources.c.id,
    _resources.c.stack,
    _resources.c.generation,
    _resources.c.status,
    _resources.c.host,
    _resources.c.desired_hash,
    _resources.c.applied_hash,
    cast(_resources.c.created_at, Text),
    cast(_resources.c.updated_at, Text),
    cast(_resources.c.desired, Text),
    cast(_resources.c.applied, Text),
    cast(_resources.c.live, Text),
).order_by(_resources.c.kind, _resources.c.namespace, _resources.c.name)


def _observation(row: AnyRow) -> ObservationRecord:
    return ObservationRecord(
        kind=Kind(row.kind),
        namespace=row.namespace,
        name=row.name,
        host=row.host,
        state=row.state,
        details=row.details or {},
        observed_at=row.observed_at,
    )


def _sealed(record: ResourceRecord, column: str, ring: KeyRing) -> dict[str, Any]:
    """A spec column and its hash as stored: secrets sealed (``database.sealing``), the hash of what is stored
    (a digest of a spec with a secret in clear would let one test guesses of the secret against it)."""
    spec: dict[str, Any] | None = getattr(record, column)
    digest: str | None = getattr(record, f"{column}_hash")
    sealed = seal_spec(record.kind, spec, ring)
    if sealed is not spec and digest is not None:
        digest = spec_digest(sealed)
    return {column: sealed, f"{column}_hash": digest}


def spec_digest(spec: Mapping[str, Any] | None) -> str | None:
    """SHA-256 of the canonical JSON of a spec (``desired_hash``, ``applied_hash``)."""
    if spec is None:
        return None
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _apply(row: AnyRow) -> ApplyRecord:
    return ApplyRecord(
        id=row.id,
        stack=row.stack,
        revision=row.revision,
        holder=row.holder,
        state=row.state,
        started_at=row.started_at,
        finished_at=row.finished_at,
        summary=row.summary,
        plan=getattr(row, "plan", None) or {},
        term=row.term,
    )


def _action(row: AnyRow) -> ActionRecord:
    return ActionRecord(
        apply_id=row.apply_id,
        action_id=row.action_id,
        kind=Kind(row.kind),
        namespace=row.namespace,
        name=row.name,
        family=row.family,
        operation=row.operation,
        host=row.host,
        depends_on=tuple(row.depends_on or ()),
        state=row.state,
        attempts=row.attempts,
        error=row.error,
        result=row.result,
        started_at=row.started_at,
        finished_at=row.finished_at,
        term=row.term,
    )


def _event(row: AnyRow) -> EventRecord:
    return EventRecord(
        id=row.id,
        time=row.time,
        type=row.type,
        severity=row.severity,
        kind=Kind(row.kind) if row.kind is not None else None,
        namespace=row.namespace,
        name=row.name,
        stack=row.stack,
        message=row.message,
        data=row.data or {},
    )


class StateOperations(Operations):
    # --- resources -----------------------------------------------------------------------------------------

    def list_resources(
        self,
        *,
        stack: str | None = None,
        kind: Kind | None = None,
        namespace: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ResourceRecord]:
        """Resources, optionally of one stack, kind or namespace, ordered by kind, namespace and name; with
        ``limit``, that many after the first ``offset`` (a page)."""
        if limit is None:
            filters = {"stack": stack, "kind": kind.value if kind is not None else None, "namespace": namespace}
            given = {name: value for name, value in filters.items() if value is not None}
            query = _listing(stack is not None, kind is not None, namespace is not None)
            with self._read() as connection:
                return [record_of(values) for values in direct.rows(connection, query, given)]
        query = select(_resources)
        if stack is not None:
            query = query.where(_resources.c.stack == stack)
        if kind is not None:
            query = query.where(_resources.c.kind == kind.value)
        if namespace is not None:
            query = query.where(_resources.c.namespace == namespace)
        query = query.order_by(_resources.c.kind, _resources.c.namespace, _resources.c.name)
        if limit is not None:
            query = query.limit(limit).offset(offset)
        with self._read() as connection:
            return [_resource(row) for row in connection.execute(query)]

    def record_rows(self) -> RecordRows:
        """Every record, as ``list_resources()`` lists them, by key; each decoded from its row only when read."""
        return RecordRows.of(*_StoredRows(self._read).every_row())

    def rows_of(self, keys: Collection[ResourceKey]) -> RecordRows:
        """The records of ``keys`` that there are, as ``record_rows`` gives them (a query per ``ROWS_AT_ONCE``)."""
        wanted, source = sorted(keys), _StoredRows(self._read)
        found: list[Sequence[Any]] = []
        processors: Processors = ()
        for start in range(0, len(wanted), ROWS_AT_ONCE):
            rows, processors = source.rows(wanted[start : start + ROWS_AT_ONCE])
            found.extend(rows)
        return RecordRows.of(found, processors)

    def rows_on_hosts(self, hosts: Collection[str]) -> RecordRows:
        """The records of the resources whose row names one of ``hosts`` (``ResourceRecord.host``), of those hosts,
        and of the VMs whose row names none, as ``record_rows`` gives them: what an observation of those hosts
        words (a query per 16 hosts)."""
        wanted = sorted(set(hosts))
        found: dict[ResourceKey, Sequence[Any]] = {}
        processors: Processors = ()
        with self._read() as connection:
            for start in range(0, len(wanted), _HOSTS_AT_ONCE):
                chunk = wanted[start : start + _HOSTS_AT_ONCE]
                given = {f"host{index}": chunk[min(index, len(chunk) - 1)] for index in range(_HOSTS_AT_ONCE)}
                rows, processors = direct.raw_rows(connection, _ON_HOSTS, given)
                found.update(by_key(rows))
        return RecordRows(found, processors)

    def known_rows(self, known: Mapping[ResourceKey, RowSummary]) -> KnownRows:
        """The records of ``known`` (``RecordRows.summaries`` of rows the caller knows the table still holds), as
        ``record_rows`` gives them, each row read only when its record is asked for (``KnownRows``)."""
        return KnownRows(known, _StoredRows(self._read))

    def count_resources(
        self, *, stack: str | None = None, kind: Kind | None = None, namespace: str | None = None
    ) -> int:
        """How many resources ``list_resources`` would list without a limit."""
        query = select(func.count()).select_from(_resources)
        if stack is not None:
            query = query.where(_resources.c.stack == stack)
        if kind is not None:
            query = query.where(_resources.c.kind == kind.value)
        if namespace is not None:
            query = query.where(_resources.c.namespace == namespace)
        with self._read() as connection:
            return int(connection.execute(query).scalar_one())

    def resource_stamps(self) -> list[tuple[ResourceKey, tuple[Any, ...]]]:
        """Every resource's key and a stamp of its row, in ``list_resources``'s order: every column, the specs
        and live identifiers as their stored JSON text, read but not decoded. Two equal stamps are two reads of
        the same row content, whatever the clock did; what a reader that keeps the records between reads
        (``controller.applying.records_cache``) compares to decode again only the rows that changed."""
        with self._read() as connection:
            rows = direct.rows(connection, _STAMPS)
        return [(ResourceKey(Kind(row[0]), row[1], row[2]), tuple(row[3:])) for row in rows]

    def resources_stamp(self) -> tuple[Any, ...]:
        """The resources table in one aggregate row: how many rows, the oldest creation, the newest update, the
        highest id, the sum of the generations and the total length of each column written as text. With the
        change counters, which every writer of nebctl raises (but a database made again from nothing counts from
        zero again, and an edit by hand raises none), what ``controller.kept_plans`` takes as the records being as
        they were: about 20 ms for 10,000 rows on SQLite, where reading them all takes three times as long."""
        columns = _resources.c
        with self._read() as connection:
            # SQLite stores each of these columns as text already: a cast there doubled the query's time (it
            # copies each value); the server databases need it for their JSON columns.
            as_text = connection.dialect.name != "sqlite"

            def length(column: Any) -> Any:
                return func.coalesce(func.sum(func.length(cast(column, Text) if as_text else column)), 0)

            query = select(
                func.count(),
                func.min(columns.created_at),
                func.max(columns.updated_at),
                func.max(columns.id),
                func.coalesce(func.sum(columns.generation), 0),
                *(length(column) for column in (columns.desired, columns.applied, columns.live)),
                *(length(column) for column in (columns.stack, columns.status, columns.host)),
                *(length(column) for column in (columns.desired_hash, columns.applied_hash)),
            )
            return tuple(connection.execute(query).one())

    def list_resource_keys(
        self, *, stack: str | None = None, kind: Kind | None = None, namespace: str | None = None
    ) -> list[tuple[ResourceKey, str]]:
        """The keys and stacks of ``list_resources``, in its order, without reading (or decoding) the specs: what
        a listing needs to choose its page (the API)."""
        columns = _resources.c
        query = select(columns.kind, columns.namespace, columns.name, columns.stack)
        if stack is not None:
            query = query.where(columns.stack == stack)
        if kind is not None:
            query = query.where(columns.kind == kind.value)
        if namespace is not None:
            query = query.where(columns.namespace == namespace)
        query = query.order_by(columns.kind, columns.namespace, columns.name)
        with self._read() as connection:
            return [(ResourceKey(Kind(k), ns, n), st) for k, ns, n, st in connection.execute(query)]

    def get_resources(self, keys: Sequence[ResourceKey]) -> list[ResourceRecord]:
        """The records of ``keys`` that exist, in the order of ``keys`` (one query per 500)."""
        found: dict[ResourceKey, ResourceRecord] = {}
        columns = _resources.c
        with self._read() as connection:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                wanted = tuple_(columns.kind, columns.namespace, columns.name).in_(
                    [(k.kind.value, k.namespace, k.name) for k in chunk]
                )
                for row in connection.execute(select(_resources).where(wanted)):
                    record = _resource(row)
                    found[record.key] = record
        return [found[key] for key in keys if key in found]

    def get_resource(self, key: ResourceKey) -> ResourceRecord | None:
        query = select(_resources).where(
            _resources.c.kind == key.kind.value,
            _resources.c.namespace == key.namespace,
            _resources.c.name == key.name,
        )
        with self._read() as connection:
            row = connection.execute(query).first()
        return _resource(row) if row is not None else None

    def save_resource(self, record: ResourceRecord) -> None:
        """Insert or update the resource with ``record``'s key; timestamps are the store's clock."""
        self.save_resources([record])

    def save_resources(self, records: Sequence[ResourceRecord]) -> None:
        """Bulk ``save_resource`` (rebuilding records from live objects, imports, benchmarks)."""
        now = self._now()
        rows = [
            {
                "kind": record.kind.value,
                "namespace": record.namespace,
                "name": record.name,
                "stack": record.stack,
                **_sealed(record, "desired", self._secrets),
                **_sealed(record, "applied", self._secrets),
                "generation": record.generation,
                "status": record.status,
                "live": dict(record.live),
                "host": record.host,
                "created_at": now,
                "updated_at": now,
            }
            for record in records
        ]
        with self._write() as connection:
            bump(connection, RESOURCES, written=(record.key for record in records))
            for chunk in chunks(rows, BULK_CHUNK):
                upsert(connection, _resources, chunk, conflict=("kind", "namespace", "name"), update=_RESOURCE_UPDATED)

    def delete_resource(self, key: ResourceKey) -> bool:
        """Forget a resource, and what was last observed of it; returns whether there was one."""
        statement = delete(_resources).where(
            _resources.c.kind == key.kind.value,
            _resources.c.namespace == key.namespace,
            _resources.c.name == key.name,
        )
        forget = delete(_observations).where(
            _observations.c.kind == key.kind.value,
            _observations.c.namespace == key.namespace,
            _observations.c.name == key.name,
        )
        with self._write() as connection:
            bump(connection, RESOURCES, written=(key,))
            connection.execute(forget)
            return connection.execute(statement).rowcount > 0

    # --- what monitoring last saw --------------------------------------------------------------------------

    def record_observations(
        self,
        observations: Sequence[ObservationRecord],
        *,
        probed: Collection[str],
        replaced: Collection[ResourceKey] = (),
    ) -> None:
        """Keep ``observations`` as all that the probes of the hosts ``probed`` saw, replacing what those hosts'
        earlier probes left (a VM no longer differing from its record loses its row), and as all there is of the
        resources of ``replaced``, whatever host their rows name (records that moved since their rows were
        written, of hosts not probed again).

        Rows are few: one per host, and one per VM only where it differs from its record (``observations`` in
        ``controller.observing`` decides); a VM of a probed host without a row was seen as recorded, at its
        host's time. So ``diff`` and ``apply``, which call this with what they probed before planning, and a
        continuous monitor, with each round, write in proportion to hosts and drift, not to VMs. Observations
        without a time get the store's clock. A resource's record is not touched: ``updated_at`` stays the time
        of its last change, so a reader can tell an observation made before that change from a newer one.
        """
        now = self._now()
        rows = [
            {
                "kind": observation.kind.value,
                "namespace": observation.namespace,
                "name": observation.name,
                "host": observation.host,
                "state": observation.state,
                "observed_at": observation.observed_at or now,
                "details": dict(observation.details),
            }
            for observation in observations
        ]
        hosts = sorted(set(probed))
        columns = _observations.c
        with self._write() as connection:
            bump(connection, RESOURCES)
            for chunk in chunks(hosts, BULK_CHUNK):
                connection.execute(delete(_observations).where(columns.host.in_(chunk)))
            for chunk in chunks(list(replaced), 500):  # three parameters a key, as ``get_resources`` reads them
                keys = [(key.kind.value, key.namespace, key.name) for key in chunk]
                connection.execute(
                    delete(_observations).where(tuple_(columns.kind, columns.namespace, columns.name).in_(keys))
                )
            for chunk in chunks(rows, BULK_CHUNK):
                upsert(
                    connection,
                    _observations,
                    chunk,
                    conflict=("kind", "namespace", "name"),
                    update=("host", "state", "observed_at", "details"),
                )

    def list_observations(self, *, kind: Kind | None = None) -> dict[ResourceKey, ObservationRecord]:
        """What was last observed of every resource (or of one kind's), by key."""
        query = select(_observations)
        if kind is not None:
            query = query.where(_observations.c.kind == kind.value)
        with self._read() as connection:
            observations = [_observation(row) for row in connection.execute(query)]
        return {observation.key: observation for observation in observations}

    def get_observation(self, key: ResourceKey) -> ObservationRecord | None:
        query = select(_observations).where(
            _observations.c.kind == key.kind.value,
            _observations.c.namespace == key.namespace,
            _observations.c.name == key.name,
        )
        with self._read() as connection:
            row = connection.execute(query).first()
        return _observation(row) if row is not None else None

    # --- applies and their journal -------------------------------------------------------------------------

    def begin_apply(self, *, stack: str, revision: str | None, plan: dict[str, Any], holder: str) -> int:
        """Record the start of an apply; returns its id, which the journal and the events refer to."""
        values = {
            "stack": stack,
            "revision": revision,
            "holder": holder,
            "state": ApplyState.RUNNING.value,
            "started_at": self._now(),
            "plan": plan,
            "term": self._term(),
        }
        with self._write() as connection:
            result = connection.execute(insert(_applies).values(values))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def finish_apply(self, apply_id: int, *, state: str, summary: dict[str, Any]) -> None:
        statement = (
            update(_applies)
            .where(_applies.c.id == apply_id)
            .values(state=str(state), summary=summary, finished_at=self._now())
        )
        with self._write() as connection:
            if connection.execute(statement).rowcount == 0:
                raise NotFound(f"no apply with id {apply_id}")

    def get_apply(self, apply_id: int) -> ApplyRecord | None:
        with self._read() as connection:
            row = connection.execute(select(_applies).where(_applies.c.id == apply_id)).first()
        return _apply(row) if row is not None else None

    def last_unfinished_apply(self, stack: str) -> ApplyRecord | None:
        """The newest apply of ``stack`` that never finished (its process died): the one to resume."""
        query = (
            select(_applies)
            .where(_applies.c.stack == stack, _applies.c.finished_at.is_(None))
            .order_by(_applies.c.id.desc())
            .limit(1)
        )
        with self._read() as connection:
            row = connection.execute(query).first()
        return _apply(row) if row is not None else None

    def list_applies(self, *, stack: str | None = None, limit: int = 20, plans: bool = True) -> list[ApplyRecord]:
        """The newest applies first. With ``plans=False`` their plans are not read (each ``plan`` is empty): the
        plan of a 10,000-resource apply is megabytes of JSON, and a listing does not show it."""
        columns = list(_applies.c) if plans else [c for c in _applies.c if c.name != "plan"]
        query = select(*columns).order_by(_applies.c.id.desc()).limit(limit)
        if stack is not None:
            query = query.where(_applies.c.stack == stack)
        with self._read() as connection:
            return [_apply(row) for row in connection.execute(query)]

    def journal_actions(self, apply_id: int, actions: Sequence[ActionRecord]) -> None:
        """Record the planned actions of an apply, before any runs (one bulk insert)."""
        rows = [
            {
                "apply_id": apply_id,
                "action_id": action.action_id,
                "kind": action.kind.value,
                "namespace": action.namespace,
                "name": action.name,
                "family": str(action.family),
                "operation": str(action.operation),
                "host": action.host,
                "depends_on": list(action.depends_on),
                "state": str(action.state),
                "attempts": action.attempts,
                "error": action.error,
                "result": action.result,
                "started_at": action.started_at,
                "finished_at": action.finished_at,
                "term": self._term(),
            }
            for action in actions
        ]
        with self._write() as connection:
            for chunk in chunks(rows, BULK_CHUNK):
                connection.execute(insert(_actions), list(chunk))

    def update_action(
        self,
        apply_id: int,
        action_id: str,
        *,
        state: str,
        attempts: int | None = None,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Journal a state change of one action; fields left as None keep their value."""
        values: dict[str, Any] = {"state": str(state), "term": self._term()}
        optional = {
            "attempts": attempts,
            "error": error,
            "result": result,
            "started_at": started_at,
            "finished_at": finished_at,
        }
        values.update({column: value for column, value in optional.items() if value is not None})
        statement = (
            update(_actions).where(_actions.c.apply_id == apply_id, _actions.c.action_id == action_id).values(values)
        )
        with self._write() as connection:
            if connection.execute(statement).rowcount == 0:
                raise NotFound(f"no action {action_id!r} in apply {apply_id}")

    def update_actions(self, apply_id: int, updates: Sequence[ActionUpdate]) -> None:
        """Journal many action state changes in one statement (the executor's round of changes).

        Same meaning as ``update_action`` for each: fields left as None keep their value. One executemany
        instead of a statement per change, which is what keeps the journal off the executor's critical path.
        """
        if not updates:
            return
        term = self._term()
        rows = [
            {
                "match_apply": apply_id,
                "match_action": change.action_id,
                "new_state": str(change.state),
                "new_attempts": change.attempts,
                "new_error": change.error,
                "new_result": change.result,
                "new_started_at": change.started_at,
                "new_finished_at": change.finished_at,
                "new_term": term,
            }
            for change in updates
        ]
        with self._write() as connection:
            for chunk in chunks(rows, BULK_CHUNK):
                direct.execute(connection, _UPDATE_ACTIONS, chunk)

    def actions_of(self, apply_id: int) -> list[ActionRecord]:
        """The journal of one apply, in the order it was planned."""
        query = select(_actions).where(_actions.c.apply_id == apply_id).order_by(_actions.c.id)
        with self._read() as connection:
            return [_action(row) for row in connection.execute(query)]

    # --- events --------------------------------------------------------------------------------------------

    def add_event(
        self,
        event: EventRecord | None = None,
        *,
        type: str | None = None,
        message: str = "",
        severity: str = Severity.INFO,
        key: ResourceKey | None = None,
        kind: Kind | None = None,
        namespace: str | None = None,
        name: str | None = None,
        stack: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> int:
        """Append an event, given as a record or as keyword fields (``key`` sets kind, namespace and name).

        Returns its id; ids only grow, so ``list_events(after_id=...)`` follows the log.
        """
        if event is None:
            if type is None:
                raise ValueError("add_event needs an EventRecord or a type")
            if key is not None:
                kind, namespace, name = key
            event = EventRecord(
                type=type,
                message=message,
                severity=severity,
                kind=kind,
                namespace=namespace,
                name=name,
                stack=stack,
                data=data or {},
            )
        return self.add_events([event])[0]

    def add_events(self, events: Sequence[EventRecord]) -> list[int]:
        """Append many events; their ids, in the order given. SQLite returns them in order only one row per
        statement: ``append_events`` is the bulk statement, for callers that need no ids."""
        if not events:
            return []
        ids: list[int] = []
        with self._write() as connection:
            for chunk in chunks(self._event_rows(events), BULK_CHUNK):
                ids.extend(int(row[0]) for row in connection.execute(_INSERT_EVENTS, list(chunk)))
        return ids

    def append_events(self, events: Sequence[EventRecord]) -> None:
        """Append many events in one statement (an executemany), without reading their ids back."""
        if not events:
            return
        with self._write() as connection:
            for chunk in chunks(self._event_rows(events), BULK_CHUNK):
                direct.execute(connection, _APPEND_EVENTS, chunk)

    def _event_rows(self, events: Sequence[EventRecord]) -> list[dict[str, Any]]:
        now = self._now()
        return [
            {
                "time": event.time or now,
                "type": event.type,
                "severity": str(event.severity),
                "kind": event.kind.value if event.kind is not None else None,
                "namespace": event.namespace,
                "name": event.name,
                "stack": event.stack,
                "message": event.message,
                "data": dict(event.data),
            }
            for event in events
        ]

    def list_events(
        self,
        *,
        after_id: int | None = None,
        key: ResourceKey | None = None,
        stack: str | None = None,
        limit: int = 100,
        newest: bool = False,
    ) -> list[EventRecord]:
        """Events in id order: the first ``limit`` after ``after_id``, or with ``newest`` the last ``limit``."""
        query = select(_events)
        if after_id is not None:
            query = query.where(_events.c.id > after_id)
        if key is not None:
            query = query.where(
                _events.c.kind == key.kind.value,
                _events.c.namespace == key.namespace,
                _events.c.name == key.name,
            )
        if stack is not None:
            query = query.where(_events.c.stack == stack)
        query = query.order_by(_events.c.id.desc() if newest else _events.c.id).limit(limit)
        with self._read() as connection:
            events = [_event(row) for row in connection.execute(query)]
        return events[::-1] if newest else events
