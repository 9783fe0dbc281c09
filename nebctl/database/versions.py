"""Change counters (``change_counters``): a number per family of data that every write to it raises, in the same
transaction as the write.

``bump(connection, family)`` is called by the store's writers (``database.state`` for records and observations,
``database.access`` for users, tokens, rules and quotas), first in their transaction: on PostgreSQL and MariaDB the
counter's row lock then orders writers, and a counter's value is never reused. ``Store.change_versions()`` reads
every counter in one query; the HTTP API keys its caches by them (``api.caching``), so that a change made by any
process sharing the database (another replica, the CLI) is seen by the next request that reads them. A reader
must read the counters before the data they guard: what it then reads is at least as new as the counters say.

The HTTP API reads them on every request, so ``Store.change_versions`` reads them with a ``CounterReader``: one
fixed SQL statement on one connection kept for it (outside the pool, in autocommit, so that each read is its own
short transaction and sees every commit made before it), rather than a pooled connection, a transaction and a
compiled statement each time; a few microseconds on SQLite instead of a few hundred.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection, Engine

from nebctl.core.keys import ResourceKey
from nebctl.database import direct
from nebctl.database.engines import describe_error, safe_url
from nebctl.database.errors import DatabaseError
from nebctl.database.models import ChangeCounter
from nebctl.database.operating import Operations, table

_counters = table(ChangeCounter)

RESOURCES = "resources"  # resource records and what monitoring observed of them
ACCESS = "access"  # users (their groups, whether enabled), tokens, access rules, quotas
FAMILIES = (RESOURCES, ACCESS)


@dataclass(frozen=True)
class Versions:
    """The counters as read at one moment."""

    resources: int
    access: int


def seed_rows() -> list[dict[str, object]]:
    """The rows a new database starts with (``migrating`` and the migration write them)."""
    return [{"name": family, "value": 0} for family in FAMILIES]


# One statement for every raise: building it anew (its clauses, then its cache key) took longer than running it,
# and an apply raises the counter once per round of its journal.
_RAISE = update(_counters).where(_counters.c.name == bindparam("family")).values(value=_counters.c.value + 1)


@dataclass
class Pending:
    """What one transaction raised and wrote so far (``bump``): the store hands it to whoever watches its own
    writes once the transaction commits (``Store.own_writes``), and drops it when it rolls back."""

    raised: dict[str, int] = field(default_factory=dict)
    written: set[ResourceKey] = field(default_factory=set)


# Where a store's transaction keeps its ``Pending`` (the connection's ``info``, set anew at each begin).
PENDING = "nebctl.pending"


def bump(connection: Connection, family: str, written: Iterable[ResourceKey] = ()) -> None:
    """Raise ``family``'s counter inside the caller's writing transaction, which writes (saves or deletes) the
    records of ``written``."""
    raised = direct.execute(connection, _RAISE, [{"family": family}])
    if not raised:  # a database whose rows were removed by hand: the row comes back, past any value seen
        connection.execute(insert(_counters).values(name=family, value=1))
    pending = connection.info.get(PENDING)
    if isinstance(pending, Pending):
        pending.raised[family] = pending.raised.get(family, 0) + 1
        pending.written.update(written)


# Built once: every API request runs it, and building a statement costs more than running it on SQLite.
_READ_ALL = select(_counters.c.name, _counters.c.value)


class VersionOperations(Operations):
    def change_versions(self) -> Versions:
        """Every change counter, in one read."""
        with self._read() as connection:
            return _versions(connection.execute(_READ_ALL))


def _versions(rows: Any) -> Versions:
    values = {str(name): int(value) for name, value in rows}
    return Versions(resources=int(values.get(RESOURCES, 0)), access=int(values.get(ACCESS, 0)))


class CounterReader:
    """Reads every change counter on a connection of its own, kept open between reads (thread-safe: one read at a
    time). A failed read closes that connection, so the next read opens a new one, and raises ``DatabaseError``."""

    # Plain SQL with no parameter: the same text on every backend, which PostgreSQL's driver prepares once
    # it has seen it a few times.
    SQL = f"SELECT name, value FROM {_counters.name}"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._connection: Any = None

    def read(self) -> Versions:
        with self._lock:
            kept = self._connection is not None
            try:
                rows = self._rows()
            except Exception as error:
                self._discard()
                if not kept:
                    raise self._failed(error) from error
                # The kept connection may have been closed by the server (a restart, an idle timeout) since the
                # last read: once more, on a new one.
                try:
                    rows = self._rows()
                except Exception as again:
                    self._discard()
                    raise self._failed(again) from again
        return _versions(rows)

    def _rows(self) -> list[Any]:
        connection = self._connection if self._connection is not None else self._open()
        cursor = connection.cursor()
        try:
            cursor.execute(self.SQL)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def _failed(self, error: Exception) -> DatabaseError:
        return DatabaseError(f"database read failed ({safe_url(self._engine.url)}): {describe_error(error)}")

    def close(self) -> None:
        with self._lock:
            self._discard()

    def _open(self) -> Any:
        # A connection made by the engine (its connect arguments, timeouts and SQLite pragmas), taken out of the
        # pool for good; autocommit, so that no transaction stays open between reads.
        fairy = self._engine.raw_connection()
        fairy.detach()
        connection: Any = fairy.dbapi_connection
        dialect = self._engine.dialect.name
        if dialect == "postgresql":
            connection.rollback()  # whatever the engine's set-up left open, before autocommit may be set
            connection.autocommit = True
        elif dialect == "mysql":
            connection.autocommit(True)
        # SQLite: the engine's connections already leave transactions to explicit BEGINs (engines).
        self._connection = connection
        return connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a broken connection: closing it is only tidying up
                connection.close()
