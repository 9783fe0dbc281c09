"""The leader lease of ``nebctl serve``'s replicas, its fencing check, and the replicas' heartbeats.

A lease is one row of ``leases``. Every time in it is the database server's clock, read in the same transaction
that compares or writes it (``database_now``), so the replicas' own clocks, and their skew, never matter. The row
is never deleted: releasing it only makes it expire now, so its ``term`` keeps growing, by one at every change of
holder (and when a holder comes back to a lease that expired meanwhile).

Fencing: a leader's store checks, at the start of every writing transaction, that the lease still names it, with
its term, unexpired (``check_fence``). The check locks the lease row for share (PostgreSQL's ``FOR SHARE``,
MariaDB's ``LOCK IN SHARE MODE``; SQLite has one writer at a time), and a takeover updates that row, so a takeover
waits for the writes already checked to commit, and every write that starts after it is refused (``Fenced``):
a leader paused past its lease (SIGSTOP) cannot write anything once another replica leads.

Used by ``Store`` (``acquire_lease``, ``fenced``...) and through it by ``controller.serving.leading``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exc, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from nebctl.database.engines import transaction
from nebctl.database.errors import DatabaseError
from nebctl.database.models import Lease, Replica
from nebctl.database.operating import AnyRow, Fence, table, upsert
from nebctl.database.records import LeaseRecord, ReplicaRecord

_leases = table(Lease)
_replicas = table(Replica)

# Each backend's current time, UTC, with microseconds. PostgreSQL's now() is the transaction's start, which a
# lock wait leaves behind: clock_timestamp() is the moment of the statement.
_NOW = {
    "postgresql": "SELECT clock_timestamp() AT TIME ZONE 'UTC'",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "mariadb": "SELECT UTC_TIMESTAMP(6)",
    "sqlite": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
}


class Fenced(DatabaseError):  # noqa: N818  (reads as a sentence: raise Fenced)
    """A write of a replica that no longer holds the leader lease (another leads, or it expired): refused."""


def database_now(connection: Connection) -> datetime:
    """The database server's clock, as an aware UTC datetime."""
    value: Any = connection.execute(text(_NOW[connection.dialect.name])).scalar_one()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    moment: datetime = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment


def _lease(row: AnyRow) -> LeaseRecord:
    return LeaseRecord(
        name=row.name,
        holder=row.holder,
        acquired_at=row.acquired_at,
        renewed_at=row.renewed_at,
        expires_at=row.expires_at,
        term=int(row.term),
    )


def _locked_lease(connection: Connection, name: str, *, share: bool = False) -> AnyRow | None:
    query = select(_leases).where(_leases.c.name == name).with_for_update(read=share)
    return connection.execute(query).first()


def acquire_lease(
    engine: Engine,
    name: str,
    holder: str,
    ttl: float,
    *,
    takeable: set[str] = frozenset(),  # type: ignore[assignment]
) -> LeaseRecord | None:
    """Take lease ``name`` for ``holder`` if it is free, expired, or held by one of ``takeable`` (holders known to
    be gone); keep it if it is ours and unexpired. Returns the lease as it now is (ours if its holder is
    ``holder``), or None when another replica took it at the same moment.

    A change of holder, or taking back our own lease after it expired, starts a new term."""
    try:
        with transaction(engine, write=True) as connection:
            row = _locked_lease(connection, name)
            now = database_now(connection)
            expires = now + timedelta(seconds=ttl)
            if row is None:
                connection.execute(
                    insert(_leases).values(
                        name=name, holder=holder, acquired_at=now, renewed_at=now, expires_at=expires, term=1
                    )
                )
                return LeaseRecord(name, holder, now, now, expires, 1)
            if row.holder == holder and row.expires_at > now:
                connection.execute(
                    update(_leases)
                    .where(_leases.c.name == name, _leases.c.term == row.term)
                    .values(renewed_at=now, expires_at=expires)
                )
                return LeaseRecord(name, holder, row.acquired_at, now, expires, int(row.term))
            if row.expires_at > now and row.holder not in takeable:
                return _lease(row)  # another's: the caller sees who leads, and in which term
            term = int(row.term) + 1
            taken = connection.execute(
                update(_leases)
                .where(_leases.c.name == name, _leases.c.term == row.term)
                .values(holder=holder, acquired_at=now, renewed_at=now, expires_at=expires, term=term)
            )
            if taken.rowcount == 0:
                return None  # another replica took it first (SQLite has no row lock to make us wait)
            return LeaseRecord(name, holder, now, now, expires, term)
    except exc.IntegrityError:
        return None  # two replicas created the row at once: the other one won


def renew_lease(engine: Engine, name: str, holder: str, term: int, ttl: float) -> LeaseRecord | None:
    """Extend our lease of ``term`` from now; None when it is not ours any more or expired before we renewed."""
    with transaction(engine, write=True) as connection:
        row = _locked_lease(connection, name)
        now = database_now(connection)
        if row is None or row.holder != holder or int(row.term) != term or row.expires_at <= now:
            return None
        expires = now + timedelta(seconds=ttl)
        connection.execute(
            update(_leases)
            .where(_leases.c.name == name, _leases.c.term == term)
            .values(renewed_at=now, expires_at=expires)
        )
        return LeaseRecord(name, holder, row.acquired_at, now, expires, term)


def release_lease(engine: Engine, name: str, holder: str, term: int) -> bool:
    """Make our lease of ``term`` expire now, so that another replica takes it at once; whether it was ours."""
    with transaction(engine, write=True) as connection:
        row = _locked_lease(connection, name)
        if row is None or row.holder != holder or int(row.term) != term:
            return False
        now = database_now(connection)
        connection.execute(update(_leases).where(_leases.c.name == name, _leases.c.term == term).values(expires_at=now))
        return True


def read_lease(engine: Engine, name: str) -> tuple[LeaseRecord | None, datetime]:
    """The lease (None if never taken) and the database's clock, read together."""
    with transaction(engine, write=False) as connection:
        row = connection.execute(select(_leases).where(_leases.c.name == name)).first()
        now = database_now(connection)
    return (_lease(row) if row is not None else None), now


def check_fence(connection: Connection, fence: Fence) -> None:
    """Refuse (``Fenced``) the transaction of ``connection`` unless ``fence`` still leads: the lease names its
    holder with its term and has not expired. Locks the lease row for share until the transaction ends."""
    term = fence.term
    if term is None:
        raise Fenced(f"this replica does not hold the leader lease {fence.lease!r}: it does not write")
    row = _locked_lease(connection, fence.lease, share=True)
    now = database_now(connection)
    if row is None or row.holder != fence.holder or int(row.term) != term:
        leader = f"{row.holder} leads in term {row.term}" if row is not None else "nobody holds it"
        raise Fenced(f"the leader lease {fence.lease!r} of term {term} was lost ({leader}): write refused")
    if row.expires_at <= now:
        raise Fenced(f"the leader lease {fence.lease!r} of term {term} expired at {row.expires_at}: write refused")


# --- the replicas -----------------------------------------------------------------------------------------------


def _replica(row: AnyRow) -> ReplicaRecord:
    return ReplicaRecord(
        id=row.id,
        lease=row.lease,
        host=row.host,
        pid=row.pid,
        listen=row.listen,
        role=row.role,
        term=int(row.term) if row.term is not None else None,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
    )


def heartbeat(
    engine: Engine, *, replica: str, lease: str, host: str, pid: int, listen: str | None, role: str, term: int | None
) -> None:
    """Record that ``replica`` lives, in ``role``, at the database's clock."""
    with transaction(engine, write=True) as connection:
        now = database_now(connection)
        row = {
            "id": replica,
            "lease": lease,
            "host": host,
            "pid": pid,
            "listen": listen,
            "role": role,
            "term": term,
            "started_at": now,
            "heartbeat_at": now,
        }
        upsert(connection, _replicas, [row], conflict=["id"], update=["role", "term", "heartbeat_at", "listen"])


def list_replicas(engine: Engine, lease: str) -> tuple[list[ReplicaRecord], datetime]:
    """The replicas of ``lease`` by id, and the database's clock, read together."""
    with transaction(engine, write=False) as connection:
        rows = connection.execute(select(_replicas).where(_replicas.c.lease == lease).order_by(_replicas.c.id))
        replicas = [_replica(row) for row in rows]
        now = database_now(connection)
    return replicas, now


def forget_replicas(engine: Engine, lease: str, *, ids: set[str] | None = None, silent_for: float | None = None) -> int:
    """Delete the rows of replicas ``ids``, or of those whose last heartbeat is older than ``silent_for`` s."""
    with transaction(engine, write=True) as connection:
        statement = delete(_replicas).where(_replicas.c.lease == lease)
        if ids is not None:
            statement = statement.where(_replicas.c.id.in_(sorted(ids)))
        if silent_for is not None:
            cutoff = database_now(connection) - timedelta(seconds=silent_for)
            statement = statement.where(_replicas.c.heartbeat_at < cutoff)
        return int(connection.execute(statement).rowcount)
