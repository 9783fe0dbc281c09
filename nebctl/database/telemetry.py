"""Store operations on what monitoring, accounting and hooks record: samples, placement history, showback, hook
runs.

Mixed into ``Store`` and ``Batch``. Monitoring writes samples in bulk (one observation of every host is one
transaction: ``add_samples``), the service downsamples and prunes them on a retention schedule, the executor
opens and closes accounting history as VMs are placed, moved, resized, started, stopped and removed,
``nebctl showback`` replaces a month's priced records, and the hook runner records each run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import and_, bindparam, delete, func, insert, literal_column, or_, select, type_coerce, update
from sqlalchemy.types import NullType

from nebctl.core.keys import ResourceKey
from nebctl.database import direct
from nebctl.database.models import AccountingRecord, HookRun, HostSample, ShowbackRecord, VMSample
from nebctl.database.operating import AnyRow, Operations, bulk_insert, chunks, table
from nebctl.database.records import (
    HistoryOpening,
    HistoryRecord,
    HistorySpan,
    HookRunRecord,
    HostSampleRecord,
    ShowbackRow,
    VMSampleRecord,
)

_host_samples = table(HostSample)
_vm_samples = table(VMSample)
_history = table(AccountingRecord)
_hook_runs = table(HookRun)
_showback = table(ShowbackRecord)
_SHOWBACK_FIELDS = ShowbackRow._fields
_HOST_FIELDS = tuple(field.name for field in fields(HostSampleRecord))
_VM_FIELDS = tuple(field.name for field in fields(VMSampleRecord))
_vm_values = attrgetter(*_VM_FIELDS)  # a VM sample's fields as one tuple, in one C call

# The placement-record statements, built once: the executor's journal runs them every round.
_CLOSE_HISTORIES = (
    update(_history)
    .where(
        _history.c.namespace == bindparam("match_namespace"),
        _history.c.name == bindparam("match_name"),
        _history.c.ended_at.is_(None),
    )
    .values(ended_at=bindparam("new_ended_at"), end_reason=bindparam("new_end_reason"))
)


def _closing(vm: ResourceKey, end: datetime, reason: str) -> dict[str, Any]:
    """The parameters of ``_CLOSE_HISTORIES`` that end ``vm``'s open placement record."""
    return {"match_namespace": vm.namespace, "match_name": vm.name, "new_ended_at": end, "new_end_reason": reason}


_INSERT_HISTORIES = insert(_history)

# Hook output kept per stream: enough to debug, bounded so that a chatty hook cannot bloat the database
# (and within MySQL's TEXT limit of 64 KiB even at four bytes a character).
HOOK_OUTPUT_LIMIT = 8192
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def truncate_output(text: str, limit: int = HOOK_OUTPUT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    marker = f"\n[... {len(text) - limit} characters cut]"
    return text[: limit - len(marker)] + marker


def _host_sample(row: AnyRow) -> HostSampleRecord:
    return HostSampleRecord(
        host=row.host,
        time=row.time,
        state=row.state,
        cpu_total=row.cpu_total,
        cpu_load=row.cpu_load,
        memory_total=row.memory_total,
        memory_used=row.memory_used,
        disk_total=row.disk_total,
        disk_used=row.disk_used,
        attributes=row.attributes or {},
        resolution=row.resolution,
    )


def _vm_sample(row: AnyRow) -> VMSampleRecord:
    return VMSampleRecord(
        namespace=row.namespace,
        name=row.name,
        host=row.host,
        time=row.time,
        state=row.state,
        cpu=row.cpu,
        memory_used=row.memory_used,
        disk_read_bytes=row.disk_read_bytes,
        disk_write_bytes=row.disk_write_bytes,
        net_rx_bytes=row.net_rx_bytes,
        net_tx_bytes=row.net_tx_bytes,
        resolution=row.resolution,
    )


def _history_record(row: AnyRow) -> HistoryRecord:
    return HistoryRecord(
        id=row.id,
        namespace=row.namespace,
        name=row.name,
        stack=row.stack,
        host=row.host,
        started_at=row.started_at,
        ended_at=row.ended_at,
        vcpu=row.vcpu,
        memory=row.memory,
        disk=row.disk,
        reason=row.reason,
        end_reason=row.end_reason,
        state=row.state,
        owner=row.owner,
        instance_type=row.instance_type,
    )


# A stored time (SQLite's text, ``YYYY-MM-DD HH:MM:SS.ffffff``) as whole microseconds since 1970: the whole
# seconds from ``strftime``, then the fraction's digits padded to six (a time written without a fraction reads 0).
_SQLITE_MICROS = (
    "(CAST(strftime('%s', {column}) AS INTEGER) * 1000000 + CAST(substr({column} || '000000', 21, 6) AS INTEGER))"
)
_SPAN_ORDER = tuple(_history.c[name] for name in ("namespace", "name", "started_at", "id"))
_SQLITE_SPANS = (
    "SELECT namespace, name, host, stack, owner, state, "
    + _SQLITE_MICROS.format(column="started_at")
    + ", CASE WHEN ended_at IS NULL THEN NULL ELSE "
    + _SQLITE_MICROS.format(column="ended_at")
    + " END, vcpu, memory, disk, instance_type FROM accounting_history"
    " WHERE started_at < ? AND (ended_at IS NULL OR ended_at > ?) ORDER BY "
    + ", ".join(column.name for column in _SPAN_ORDER)
)
# The same on MariaDB/MySQL, whose times are DATETIME(6) (NULL stays NULL).
_MYSQL_MICROS = "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {column})"
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _sqlite_text(moment: datetime) -> str:
    """A time as SQLite holds it (``UTCDateTime``'s text), so that the stored texts compare with it in order."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _micros(moment: datetime) -> int:
    """A time from a server's driver (naive UTC; an aware one is converted) as microseconds since 1970."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - _NAIVE_EPOCH) // _MICROSECOND


def _bucket_start(time: datetime, bucket: timedelta) -> datetime:
    """The start of the ``bucket``-long interval (aligned on the epoch) that ``time`` falls in."""
    return _EPOCH + ((time - _EPOCH) // bucket) * bucket


class TelemetryOperations(Operations):
    # --- monitoring samples --------------------------------------------------------------------------------

    def add_samples(self, hosts: Sequence[HostSampleRecord], vms: Sequence[VMSampleRecord]) -> None:
        """One observation of the fleet (every host's probe and every VM of theirs) in one transaction."""
        host_rows = [{name: getattr(sample, name) for name in _HOST_FIELDS} for sample in hosts]
        vm_rows = [_vm_values(sample) for sample in vms]
        with self._write() as connection:
            for chunk in chunks(host_rows, 1000):
                connection.execute(insert(_host_samples), list(chunk))  # JSON attributes: SQLAlchemy's path
            # A fleet's observation is tens of thousands of VM rows: one plain executemany.
            bulk_insert(connection, _vm_samples, _VM_FIELDS, vm_rows)

    def add_host_samples(self, samples: Sequence[HostSampleRecord]) -> None:
        rows = [asdict(sample) for sample in samples]
        with self._write() as connection:
            for chunk in chunks(rows, 1000):
                connection.execute(insert(_host_samples), list(chunk))

    def add_vm_samples(self, samples: Sequence[VMSampleRecord]) -> None:
        rows = [asdict(sample) for sample in samples]
        with self._write() as connection:
            for chunk in chunks(rows, 1000):
                connection.execute(insert(_vm_samples), list(chunk))

    def host_samples(
        self, *, host: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> list[HostSampleRecord]:
        """Samples in time order, ``since`` inclusive, ``until`` exclusive."""
        query = select(_host_samples).order_by(_host_samples.c.time, _host_samples.c.id)
        if host is not None:
            query = query.where(_host_samples.c.host == host)
        if since is not None:
            query = query.where(_host_samples.c.time >= since)
        if until is not None:
            query = query.where(_host_samples.c.time < until)
        with self._read() as connection:
            return [_host_sample(row) for row in connection.execute(query)]

    def vm_samples(
        self,
        *,
        vm: ResourceKey | None = None,
        host: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[VMSampleRecord]:
        query = select(_vm_samples).order_by(_vm_samples.c.time, _vm_samples.c.id)
        if vm is not None:
            query = query.where(_vm_samples.c.namespace == vm.namespace, _vm_samples.c.name == vm.name)
        if host is not None:
            query = query.where(_vm_samples.c.host == host)
        if since is not None:
            query = query.where(_vm_samples.c.time >= since)
        if until is not None:
            query = query.where(_vm_samples.c.time < until)
        with self._read() as connection:
            return [_vm_sample(row) for row in connection.execute(query)]

    def latest_host_samples(self) -> dict[str, HostSampleRecord]:
        """The newest sample of every host (placement and ``nebctl hosts``)."""
        newest = (
            select(_host_samples.c.host, func.max(_host_samples.c.time).label("time"))
            .group_by(_host_samples.c.host)
            .subquery()
        )
        query = (
            select(_host_samples)
            .join(newest, and_(_host_samples.c.host == newest.c.host, _host_samples.c.time == newest.c.time))
            .order_by(_host_samples.c.id)
        )
        with self._read() as connection:
            return {row.host: _host_sample(row) for row in connection.execute(query)}

    def latest_vm_samples(self, *, host: str | None = None) -> dict[tuple[str, str], VMSampleRecord]:
        """The newest sample of every VM, by (namespace, name) (``nebctl top``, drift detection)."""
        columns = _vm_samples.c
        newest_query = select(columns.namespace, columns.name, func.max(columns.time).label("time")).group_by(
            columns.namespace, columns.name
        )
        if host is not None:
            newest_query = newest_query.where(columns.host == host)
        newest = newest_query.subquery()
        query = (
            select(_vm_samples)
            .join(
                newest,
                and_(
                    columns.namespace == newest.c.namespace,
                    columns.name == newest.c.name,
                    columns.time == newest.c.time,
                ),
            )
            .order_by(columns.id)
        )
        with self._read() as connection:
            return {(row.namespace, row.name): _vm_sample(row) for row in connection.execute(query)}

    def recent_vm_samples(self, since: datetime, *, per_vm: int = 2) -> list[VMSampleRecord]:
        """The newest ``per_vm`` raw samples of each VM from ``since`` on, oldest first (``nebctl top`` derives
        rates from the last two). The database picks them (a window function), so a fleet's many samples are
        not all read back."""
        columns = _vm_samples.c
        recency = (
            func.row_number()
            .over(partition_by=(columns.namespace, columns.name), order_by=(columns.time.desc(), columns.id.desc()))
            .label("recency")
        )
        ranked = select(_vm_samples, recency).where(columns.time >= since, columns.resolution == 0).subquery("ranked")
        query = (
            select(*(ranked.c[column.name] for column in _vm_samples.columns))
            .where(ranked.c.recency <= per_vm)
            .order_by(ranked.c.time, ranked.c.id)
        )
        with self._read() as connection:
            return [_vm_sample(row) for row in connection.execute(query)]

    def prune_samples(self, before: datetime, *, resolution: int | None = None) -> int:
        """Delete host and VM samples older than ``before`` (of one resolution if given); returns how many."""
        deleted = 0
        with self._write() as connection:
            for table in (_host_samples, _vm_samples):
                statement = delete(table).where(table.c.time < before)
                if resolution is not None:
                    statement = statement.where(table.c.resolution == resolution)
                deleted += connection.execute(statement).rowcount
        return deleted

    def downsample_samples(self, *, before: datetime, bucket: timedelta, resolution: int = 0) -> int:
        """Fold raw samples (or those of ``resolution``, to downsample means again) older than ``before`` into
        one sample per host (or VM) and ``bucket``.

        Gauges (load, memory and disk use, CPU) are averaged; counters (bytes read, written, received, sent),
        the state and custom attributes take the bucket's last value. The folded samples carry
        ``resolution`` = the bucket in seconds, and the raw ones are deleted. Returns how many were folded.
        """
        seconds = int(bucket.total_seconds())
        if seconds <= 0:
            raise ValueError("the downsampling bucket must be at least one second")
        with self._write() as connection:
            host_rows = connection.execute(
                select(_host_samples)
                .where(_host_samples.c.time < before, _host_samples.c.resolution == resolution)
                .order_by(_host_samples.c.time, _host_samples.c.id)
            ).all()
            vm_rows = connection.execute(
                select(_vm_samples)
                .where(_vm_samples.c.time < before, _vm_samples.c.resolution == resolution)
                .order_by(_vm_samples.c.time, _vm_samples.c.id)
            ).all()
            host_groups: dict[tuple[str, datetime], list[AnyRow]] = {}
            for row in host_rows:
                host_groups.setdefault((row.host, _bucket_start(row.time, bucket)), []).append(row)
            vm_groups: dict[tuple[str, str, datetime], list[AnyRow]] = {}
            for row in vm_rows:
                vm_groups.setdefault((row.namespace, row.name, _bucket_start(row.time, bucket)), []).append(row)
            folded_hosts = [
                {
                    "host": host,
                    "time": start,
                    "resolution": seconds,
                    "state": rows[-1].state,
                    "cpu_total": rows[-1].cpu_total,
                    "cpu_load": sum(r.cpu_load for r in rows) / len(rows),
                    "memory_total": rows[-1].memory_total,
                    "memory_used": sum(r.memory_used for r in rows) // len(rows),
                    "disk_total": rows[-1].disk_total,
                    "disk_used": sum(r.disk_used for r in rows) // len(rows),
                    "attributes": rows[-1].attributes,
                }
                for (host, start), rows in host_groups.items()
            ]
            folded_vms = [
                {
                    "namespace": namespace,
                    "name": name,
                    "host": rows[-1].host,
                    "time": start,
                    "resolution": seconds,
                    "state": rows[-1].state,
                    "cpu": sum(r.cpu for r in rows) / len(rows),
                    "memory_used": sum(r.memory_used for r in rows) // len(rows),
                    "disk_read_bytes": rows[-1].disk_read_bytes,
                    "disk_write_bytes": rows[-1].disk_write_bytes,
                    "net_rx_bytes": rows[-1].net_rx_bytes,
                    "net_tx_bytes": rows[-1].net_tx_bytes,
                }
                for (namespace, name, start), rows in vm_groups.items()
            ]
            for table, ids in ((_host_samples, [r.id for r in host_rows]), (_vm_samples, [r.id for r in vm_rows])):
                for chunk in chunks(ids, 1000):
                    connection.execute(delete(table).where(table.c.id.in_(chunk)))
            for table, folded in ((_host_samples, folded_hosts), (_vm_samples, folded_vms)):
                for part in chunks(folded, 1000):
                    connection.execute(insert(table), list(part))
        return len(host_rows) + len(vm_rows)

    # --- accounting history --------------------------------------------------------------------------------

    def open_history(
        self,
        vm: ResourceKey,
        *,
        host: str,
        vcpu: int,
        memory: int,
        disk: int,
        reason: str,
        stack: str | None = None,
        start: datetime | None = None,
        state: str = "running",
        owner: str | None = None,
        instance_type: str | None = None,
    ) -> int:
        """Start a placement record of ``vm`` on ``host`` (as ``instance_type`` on a cloud host); an open record of
        the VM is closed first (with ``reason`` as its end reason)."""
        start = start or self._now()
        with self._write() as connection:
            connection.execute(_CLOSE_HISTORIES, _closing(vm, start, reason))
            result = connection.execute(
                insert(_history).values(
                    namespace=vm.namespace,
                    name=vm.name,
                    stack=stack,
                    host=host,
                    started_at=start,
                    vcpu=vcpu,
                    memory=memory,
                    disk=disk,
                    reason=reason,
                    state=state,
                    owner=owner,
                    instance_type=instance_type,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def open_histories(self, openings: Sequence[HistoryOpening], *, start: datetime | None = None) -> None:
        """Bulk ``open_history`` (the executor's round of placed VMs, each VM once): one statement closes the open
        records of these VMs, one inserts the new ones, whatever their number."""
        if not openings:
            return
        if len({opening.vm for opening in openings}) != len(openings):
            raise ValueError("open_histories takes each VM once")
        start = start or self._now()
        closing = [_closing(opening.vm, start, opening.reason) for opening in openings]
        rows = [
            {
                "namespace": opening.vm.namespace,
                "name": opening.vm.name,
                "stack": opening.stack,
                "host": opening.host,
                "started_at": start,
                "ended_at": None,
                "vcpu": opening.vcpu,
                "memory": opening.memory,
                "disk": opening.disk,
                "reason": opening.reason,
                "end_reason": None,
                "state": opening.state,
                "owner": opening.owner,
                "instance_type": opening.instance_type,
            }
            for opening in openings
        ]
        with self._write() as connection:
            # Statements of the executor's journal rounds: on the driver's cursor where that is cheaper.
            for chunk in chunks(closing, 1000):
                direct.execute(connection, _CLOSE_HISTORIES, chunk)
            for chunk in chunks(rows, 1000):
                direct.execute(connection, _INSERT_HISTORIES, chunk)

    def close_history(self, vm: ResourceKey, *, reason: str, end: datetime | None = None) -> int:
        """End the open placement record of ``vm``; returns how many were open (0 or 1)."""
        with self._write() as connection:
            return connection.execute(_CLOSE_HISTORIES, _closing(vm, end or self._now(), reason)).rowcount

    def list_history(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        vm: ResourceKey | None = None,
        host: str | None = None,
        namespace: str | None = None,
    ) -> list[HistoryRecord]:
        """Placement records that overlap [start, end) (open ones run until now), oldest first."""
        query = select(_history).order_by(_history.c.started_at, _history.c.id)
        if end is not None:
            query = query.where(_history.c.started_at < end)
        if start is not None:
            query = query.where(or_(_history.c.ended_at.is_(None), _history.c.ended_at > start))
        if vm is not None:
            query = query.where(and_(_history.c.namespace == vm.namespace, _history.c.name == vm.name))
        if namespace is not None:
            query = query.where(_history.c.namespace == namespace)
        if host is not None:
            query = query.where(_history.c.host == host)
        with self._read() as connection:
            return [_history_record(row) for row in connection.execute(query)]

    def history_spans(self, *, start: datetime, end: datetime) -> list[HistorySpan]:
        """What pricing needs of the placement records overlapping [start, end), as plain tuples: (namespace,
        name, host, stack, owner, state, started_at, ended_at, vcpu, memory, disk, instance_type), the times as
        whole microseconds since 1970 UTC. By VM, then as ``list_history`` (so that pricing sums each group's
        records in the same order): the order of an index, so the database sorts nothing (sorting by host too
        cost more than pricing's own sort of the groups). A month of a large fleet is tens of thousands of
        records: building a datetime and a record object for each was most of ``showback``'s reading time."""
        columns = _history.c
        with self._read() as connection:
            if connection.dialect.name == "sqlite":
                # SQLite holds the times as text, to the microsecond: the integers are computed there, in C, and
                # the driver's own cursor returns plain tuples (no row objects).
                bounds = [
                    moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
                    for moment in (end, start)
                ]
                cursor = connection.connection.cursor()
                try:
                    cursor.execute(_SQLITE_SPANS, bounds)
                    return cast(list[HistorySpan], cursor.fetchall())
                finally:
                    cursor.close()
            mysql = connection.dialect.name in ("mysql", "mariadb")
            if mysql:
                # MariaDB/MySQL count the microseconds (exactly, as integers): PyMySQL decodes an integer much
                # faster than a datetime.
                began: Any = literal_column(_MYSQL_MICROS.format(column="started_at"))
                ended: Any = literal_column(_MYSQL_MICROS.format(column="ended_at"))
            else:  # PostgreSQL's driver gives datetimes, converted below (no per-value type processing)
                began = type_coerce(columns.started_at, NullType())
                ended = type_coerce(columns.ended_at, NullType())
            query = (
                select(
                    columns.namespace,
                    columns.name,
                    columns.host,
                    columns.stack,
                    columns.owner,
                    columns.state,
                    began,
                    ended,
                    columns.vcpu,
                    columns.memory,
                    columns.disk,
                    columns.instance_type,
                )
                .where(columns.started_at < end, or_(columns.ended_at.is_(None), columns.ended_at > start))
                .order_by(*_SPAN_ORDER)
            )
            rows = connection.execute(query).all()
        if mysql:
            return cast(list[HistorySpan], rows)
        micros = _micros
        return [
            (ns, name, host, stack, owner, state, micros(began), ended and micros(ended), vcpu, memory, disk, kind)
            for ns, name, host, stack, owner, state, began, ended, vcpu, memory, disk, kind in rows
        ]

    # --- showback ------------------------------------------------------------------------------------------

    def replace_showback(self, month: str, rows: Sequence[ShowbackRow]) -> None:
        """Replace the priced records of ``month`` (YYYY-MM) with ``rows``, in one transaction: a reader sees
        the old month or the new one, never a mix, and a crash half-way keeps the old one."""
        computed_at = self._now()
        if any(row.month != month for row in rows):
            raise ValueError(f"replace_showback({month!r}) was given rows of another month")
        # A large fleet's month is tens of thousands of rows: one plain executemany, no per-row processing.
        values = [row if row[-1] is not None else (*row[:-1], computed_at) for row in rows]
        with self._write() as connection:
            connection.execute(delete(_showback).where(_showback.c.month == month))
            bulk_insert(connection, _showback, _SHOWBACK_FIELDS, values)

    def list_showback(self, month: str) -> list[ShowbackRow]:
        """The stored priced records of ``month``, by VM then host."""
        columns = _showback.c
        query = (
            select(_showback)
            .where(columns.month == month)
            .order_by(columns.namespace, columns.name, columns.host, columns.id)
        )
        with self._read() as connection:
            return [
                ShowbackRow(
                    month=row.month,
                    namespace=row.namespace,
                    name=row.name,
                    stack=row.stack,
                    owner=row.owner,
                    host=row.host,
                    running_hours=row.running_hours,
                    stopped_hours=row.stopped_hours,
                    vcpu_hours=row.vcpu_hours,
                    memory_gib_hours=row.memory_gib_hours,
                    disk_gib_hours=row.disk_gib_hours,
                    cpu_cost=row.cpu_cost,
                    memory_cost=row.memory_cost,
                    disk_cost=row.disk_cost,
                    cost=row.cost,
                    currency=row.currency,
                    instance_type=row.instance_type,
                    computed_at=row.computed_at,
                )
                for row in connection.execute(query)
            ]

    # --- hook runs -----------------------------------------------------------------------------------------

    def add_hook_run(self, run: HookRunRecord) -> int:
        """Record one hook run; its output is cut to ``HOOK_OUTPUT_LIMIT`` characters per stream."""
        values = asdict(run)
        values.pop("id")
        values["started_at"] = run.started_at or self._now()
        values["stdout"] = truncate_output(run.stdout)
        values["stderr"] = truncate_output(run.stderr)
        with self._write() as connection:
            result = connection.execute(insert(_hook_runs).values(values))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def list_hook_runs(self, *, hook: str | None = None, limit: int = 100) -> list[HookRunRecord]:
        """The newest runs first."""
        query = select(_hook_runs).order_by(_hook_runs.c.id.desc()).limit(limit)
        if hook is not None:
            query = query.where(_hook_runs.c.hook == hook)
        with self._read() as connection:
            return [
                HookRunRecord(
                    id=row.id,
                    hook=row.hook,
                    namespace=row.namespace,
                    event=row.event,
                    event_id=row.event_id,
                    exit_code=row.exit_code,
                    timed_out=row.timed_out,
                    duration=row.duration,
                    stdout=row.stdout,
                    stderr=row.stderr,
                    started_at=row.started_at,
                )
                for row in connection.execute(query)
            ]
