"""Connecting to the database: one SQLAlchemy engine per URL, tuned per backend, with errors made readable.

Used by ``Store.open`` and by the migration commands. SQLite runs in WAL mode with ``synchronous=NORMAL`` and a
busy timeout, and every writing transaction starts with ``BEGIN IMMEDIATE``: a deferred transaction that reads
and then writes can fail at once with "database is locked" when another process wrote in between, whatever the
busy timeout, while an immediate one simply waits its turn. The servers run at READ COMMITTED so that every
backend sees the same thing in the lock protocol (``database.locking``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from nebctl.database.errors import DatabaseError

SQLITE_BUSY_TIMEOUT = 30.0  # seconds a writer waits for another one before giving up
CONNECT_TIMEOUT = 10  # seconds, for the servers

# The execution option that marks a transaction as writing (``BEGIN IMMEDIATE`` on SQLite).
WRITE_OPTION = "nebctl_write"

_DRIVER_PACKAGES = {"psycopg": "nebctl[postgresql]", "pymysql": "nebctl[mysql]"}


def parse_url(text: str) -> URL:
    """Parse a database URL, or fail with a line that says what a valid one looks like."""
    try:
        url = make_url(text)
    except exc.ArgumentError as error:
        raise DatabaseError(
            f"invalid database URL {text!r}: expected sqlite:///PATH, mysql+pymysql://USER:PASSWORD@HOST/DB "
            "or postgresql+psycopg://USER:PASSWORD@HOST/DB"
        ) from error
    if url.get_backend_name() not in ("sqlite", "mysql", "mariadb", "postgresql"):
        raise DatabaseError(f"unsupported database {url.get_backend_name()!r} in {safe_url(url)}")
    return url


def safe_url(url: URL | str) -> str:
    """The URL with its password masked, fit for messages and logs."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except exc.ArgumentError:
            return "(invalid URL)"
    return url.render_as_string(hide_password=True)


def create(text: str) -> Engine:
    """An engine for ``text``; for a file-backed SQLite database, its directory is created when missing."""
    url = parse_url(text)
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(url)
        connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
        return create_engine(url, isolation_level="READ COMMITTED", pool_pre_ping=True, connect_args=connect_args)
    except exc.NoSuchModuleError as error:
        raise DatabaseError(f"unknown database driver in {safe_url(url)}: {error}") from error
    except ModuleNotFoundError as error:
        package = _DRIVER_PACKAGES.get(error.name or "", error.name)
        raise DatabaseError(f"the driver for {safe_url(url)} is not installed: pip install '{package}'") from error


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if in_memory:
        # One shared connection, or every new connection would see a new, empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = Path(database).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DatabaseError(f"cannot create the directory of {path}: {error.strerror}") from error
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        # Let us issue BEGIN ourselves (below), instead of the driver's implicit deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writing = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


def describe_error(error: BaseException) -> str:
    """The first line of what the database driver said, without SQLAlchemy's SQL dump and links."""
    original = getattr(error, "orig", None) or error
    args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    # PyMySQL errors carry (code, message).
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = f"{args[1]} (error {args[0]})"
    else:
        text = str(original)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


@contextmanager
def translated_errors(url: URL | str, doing: str) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors raised inside into one-line ``DatabaseError``s."""
    try:
        yield
    except DatabaseError:
        raise
    except exc.SQLAlchemyError as error:
        raise DatabaseError(f"{doing} ({safe_url(url)}): {describe_error(error)}") from error


@contextmanager
def transaction(engine: Engine, *, write: bool) -> Iterator[Connection]:
    """One transaction on a pooled connection; ``write`` makes SQLite take the write lock at BEGIN."""
    with engine.connect() as connection:
        if write:
            connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            yield connection
