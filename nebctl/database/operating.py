"""The base of every group of store operations: how an operation gets its connection, and common helpers.

``Store`` runs each operation in its own short transaction; ``Batch`` (``store.batch()``) runs them all in one.
Both inherit the same operation methods (``database.state``, ``database.telemetry``, ``database.access``) and
differ only in ``_write``/``_read``, so ``tx.save_resource`` and ``store.save_resource`` are the same code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase

Clock = Callable[[], datetime]

# A result row of any shape (the converters read columns by name).
AnyRow = Row[*tuple[Any, ...]]


def table(model: type[DeclarativeBase]) -> Table:
    """The Core table of a model, typed as such (``__table__`` is declared as a mere ``FromClause``)."""
    return cast(Table, model.__table__)


class Operations(ABC):
    """Holds the clock and hands out connections; subclasses add the operations themselves."""

    _clock: Clock

    @abstractmethod
    def _write(self) -> AbstractContextManager[Connection]:
        """A connection inside a writing transaction (committed when the block ends without error)."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Connection]:
        """A connection for reading."""

    def _now(self) -> datetime:
        return self._clock()


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
    if not rows:
        return
    name = connection.dialect.name
    if name in ("mysql", "mariadb"):
        my_insert = mysql.insert(table)
        my_statement = my_insert.on_duplicate_key_update({column: my_insert.inserted[column] for column in update})
        connection.execute(my_statement, list(rows))
        return
    if name == "postgresql":
        pg_insert = postgresql.insert(table)
        pg_statement = pg_insert.on_conflict_do_update(
            index_elements=list(conflict), set_={column: pg_insert.excluded[column] for column in update}
        )
        connection.execute(pg_statement, list(rows))
        return
    lite_insert = sqlite.insert(table)
    lite_statement = lite_insert.on_conflict_do_update(
        index_elements=list(conflict), set_={column: lite_insert.excluded[column] for column in update}
    )
    connection.execute(lite_statement, list(rows))


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
