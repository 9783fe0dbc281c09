"""The base of every group of store operations: how an operation gets its connection, and common helpers.

``Store`` runs each operation in its own short transaction; ``Batch`` (``store.batch()``) runs them all in one.
Both inherit the same operation methods (``database.state``, ``database.telemetry``, ``database.access``) and
differ only in ``_write``/``_read``, so ``tx.save_resource`` and ``store.save_resource`` are the same code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Row, Table
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from nebctl.database import direct
from nebctl.database.sealing import KeyRing
from nebctl.database.types import UTCDateTime

Clock = Callable[[], datetime]

# A result row of any shape (the converters read columns by name).
AnyRow = Row[*tuple[Any, ...]]


def table(model: Table) -> Table:
    """The table of one of ``database.models``' definitions (they are Core tables already)."""
    return model


@dataclass
class Fence:
    """The leader lease a replica's writes are fenced by: ``term`` is the term it leads under, None while it
    does not lead (then every fenced write is refused). The replica's elector changes it; stores read it."""

    lease: str
    holder: str
    term: int | None = None


class Operations(ABC):
    """Holds the clock and hands out connections; subclasses add the operations themselves."""

    _clock: Clock
    _secrets: KeyRing  # seals the secrets of every spec written (database.sealing)
    _fence: Fence | None = None  # a service replica's leader lease, checked by every write (database.leasing)

    @abstractmethod
    def _write(self) -> AbstractContextManager[Connection]:
        """A connection inside a writing transaction (committed when the block ends without error)."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Connection]:
        """A connection for reading."""

    @property
    def secrets(self) -> KeyRing:
        """The key ring that seals secrets in what this store writes, and verifies them in what it reads."""
        return self._secrets

    def _now(self) -> datetime:
        return self._clock()

    def _term(self) -> int | None:
        """The leader lease's term this store writes under (``database.leasing``), None outside the service."""
        return self._fence.term if self._fence is not None else None


def upsert(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert ``rows``, updating the ``update`` columns of rows that already exist (by the ``conflict`` key).

    One statement per batch with each backend's native form, so an upsert is atomic and a single round trip.
    """
    if rows:
        statement = _upsert_statement(connection.dialect.name, table, tuple(conflict), tuple(update))
        direct.execute(connection, statement, rows)


@lru_cache(maxsize=64)
def _upsert_statement(dialect: str, table: Table, conflict: tuple[str, ...], update: tuple[str, ...]) -> Executable:
    # Built once per table: constructing the ``excluded`` columns costs more than running the statement. Each
    # backend's dialect module is imported here, when its statement is first built, not by every command.
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        my_insert = mysql.insert(table)
        return my_insert.on_duplicate_key_update({column: my_insert.inserted[column] for column in update})
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        pg_insert = postgresql.insert(table)
        return pg_insert.on_conflict_do_update(
            index_elements=list(conflict), set_={column: pg_insert.excluded[column] for column in update}
        )
    from sqlalchemy.dialects import sqlite

    lite_insert = sqlite.insert(table)
    return lite_insert.on_conflict_do_update(
        index_elements=list(conflict), set_={column: lite_insert.excluded[column] for column in update}
    )


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def bulk_insert(connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert many rows of plain values (numbers, strings, None, aware datetimes) with one driver
    ``executemany`` (on PostgreSQL, one COPY): SQLAlchemy's per-row parameter processing was most of
    the cost of writing tens of thousands of samples or showback rows. Times are written as SQLAlchemy writes
    them (naive UTC; on SQLite, its text form with microseconds), so the rows read back exactly like rows
    inserted the usual way. Not for JSON columns."""
    if not rows:
        return
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(column) for column in columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    times = [index for index, column in enumerate(columns) if isinstance(table.c[column].type, UTCDateTime)]
    as_text = dialect.name == "sqlite"

    def time_value(value: datetime | None) -> datetime | str | None:
        if value is None:
            return None
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive.isoformat(" ", "microseconds") if as_text else naive

    if times:
        # Many rows share a time (an observation's, a month's computation): convert each distinct one once.
        seen: dict[datetime, datetime | str | None] = {}
        converted = []
        for row in rows:
            values = list(row)
            for index in times:
                value = values[index]
                if value is not None:
                    text = seen.get(value)
                    if text is None:
                        text = seen[value] = time_value(value)
                    values[index] = text
            converted.append(tuple(values))
        rows = converted
    if dialect.name != "postgresql":
        connection.exec_driver_sql(sql, [tuple(row) for row in rows])
        return
    # PostgreSQL runs an executemany as one INSERT per row; COPY streams the rows in one statement, in the
    # same transaction (the connection's own driver connection).
    cursor = connection.connection.cursor()
    try:
        copy_sql = f"COPY {quote(table.name)} ({', '.join(quote(column) for column in columns)}) FROM STDIN"
        with cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cursor.close()
