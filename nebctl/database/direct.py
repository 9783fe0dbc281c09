"""Built statements run on the driver's cursor, on SQLite: the writes on an apply's critical path, and the reads of
every record that each plan starts with.

SQLAlchemy's execution of a statement (its execution context, events, result set-up) costs several times what
SQLite takes to run a small one, and the executor's journal runs four of them per round of changes, about one
round per finished action, while the next actions wait. ``execute`` compiles each statement once per dialect
and set of parameter names, runs every value through the bind processors SQLAlchemy itself would use (JSON,
times), and hands the rows to the driver's ``executemany`` inside the caller's transaction. What is written is
what SQLAlchemy would write; driver errors come out as SQLAlchemy's, so callers translate them as before.
``rows`` does the same for a query, and runs each value it reads through the result processors SQLAlchemy would
use, so each row is the tuple SQLAlchemy would give.

The server backends keep SQLAlchemy's path: there, each statement's round trip to the server dominates, and
SQLAlchemy packs many rows into one statement where the driver would send one per row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement, Executable, Select
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True)
class _Prepared:
    statement: Executable  # kept so that its id, the cache's key, is never reused by another statement
    sql: str
    names: tuple[str, ...]  # the parameters, in the order of the statement's question marks
    processors: tuple[Callable[[Any], Any] | None, ...]
    constants: dict[str, Any]  # parameters of the statement itself, the same for every row

    def bound(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Each row's values in the statement's order, with its constants, through the bind processors."""
        pairs = tuple(zip(self.names, self.processors, strict=True))
        if self.constants:
            rows = [{**self.constants, **row} for row in rows]
        return [tuple(row[name] if process is None else process(row[name]) for name, process in pairs) for row in rows]


# By statement: the statements given are built once (module constants, cached upserts), so this stays small.
_prepared: dict[tuple[int, str, tuple[str, ...]], _Prepared] = {}


def execute(connection: Connection, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> int:
    """Run ``statement`` (built once, not per call) with each of ``rows`` (parameters by name, every row with
    the same names) in the connection's transaction; the number of rows it inserted, updated or deleted."""
    if not rows:
        return 0
    if connection.dialect.name != "sqlite":
        result = connection.execute(statement, dict(rows[0]) if len(rows) == 1 else [dict(row) for row in rows])
        return int(result.rowcount)
    prepared = _prepare(connection.dialect, statement, tuple(rows[0]))
    values = prepared.bound(rows)
    cursor = _driver(connection).cursor()
    try:
        cursor.executemany(prepared.sql, values)
        return cursor.rowcount
    except sqlite3.Error as error:
        raise exc.DBAPIError.instance(prepared.sql, values, error, sqlite3.Error) from error
    finally:
        cursor.close()


def rows(
    connection: Connection, query: Select[Any], parameters: Mapping[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """The rows of ``query`` (built once, not per call) with ``parameters`` by name, each a tuple of its selected
    columns' values as SQLAlchemy gives them (JSON parsed, times as the column's type makes them). SQLAlchemy's
    result rows were a sixth of reading every record of 10,000 VMs, which every plan starts with."""
    fetched, processors = raw_rows(connection, query, parameters)
    if not any(processors):
        return fetched
    return [
        tuple(value if process is None else process(value) for value, process in zip(row, processors, strict=True))
        for row in fetched
    ]


def raw_rows(
    connection: Connection, query: Select[Any], parameters: Mapping[str, Any] | None = None
) -> tuple[list[tuple[Any, ...]], tuple[Callable[[Any], Any] | None, ...]]:
    """The rows of ``query`` as the driver gives them, and what turns each column's value into SQLAlchemy's (None
    where it is the same): for a reader that converts only the values it reads (``database.record_rows``). Other
    databases than SQLite give SQLAlchemy's values at once."""
    given = dict(parameters or {})
    if connection.dialect.name != "sqlite":
        fetched = [tuple(row) for row in connection.execute(query, given)]
        return fetched, (None,) * len(query.selected_columns)
    prepared = _prepare(connection.dialect, query, tuple(given))
    (values,) = prepared.bound([given])
    try:
        fetched = _driver(connection).execute(prepared.sql, values).fetchall()
    except sqlite3.Error as error:
        raise exc.DBAPIError.instance(prepared.sql, values, error, sqlite3.Error) from error
    return fetched, _results(connection.dialect, query)


def _driver(connection: Connection) -> sqlite3.Connection:
    """The SQLite driver's own connection under ``connection``, in the same transaction."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _results(dialect: Dialect, query: Select[Any]) -> tuple[Callable[[Any], Any] | None, ...]:
    """What turns each selected column's driver value into SQLAlchemy's: the dialect's own result processors."""
    key = (id(query), dialect.name)
    kept = _result_processors.get(key)
    if kept is not None and kept[0] is query:
        return kept[1]
    processors = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None) for column in query.selected_columns
    )
    _result_processors[key] = (query, processors)
    return processors


# By query, as ``_prepared``: the queries given are built once.
_result_processors: dict[tuple[int, str], tuple[Select[Any], tuple[Callable[[Any], Any] | None, ...]]] = {}


def _prepare(dialect: Dialect, statement: Executable, names: tuple[str, ...]) -> _Prepared:
    key = (id(statement), dialect.name, names)
    prepared = _prepared.get(key)
    if prepared is not None and prepared.statement is statement:
        return prepared
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=dialect, column_keys=list(names))
    assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
    order = tuple(compiled.positiontup)
    if compiled.insert_prefetch or compiled.update_prefetch or compiled.literal_execute_params:
        # A column default SQLAlchemy computes per row, or a parameter it expands at run time: not for this path.
        raise ValueError(f"{type(statement).__name__} needs SQLAlchemy's execution: a computed default or expansion")
    if compiled.post_compile_params:
        raise ValueError(f"{type(statement).__name__} needs SQLAlchemy's execution: an expanding parameter")
    # Parameters not given by the rows are the statement's own constants (the 1 of ``value + 1``).
    constants = {name: compiled.binds[name].effective_value for name in order if name not in names}
    # The dialect's own form of each type: a generic DateTime has no processor, SQLite's writes it as text.
    processors = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order)
    prepared = _Prepared(statement, compiled.string, order, processors, constants)
    _prepared[key] = prepared
    return prepared
