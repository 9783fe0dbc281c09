"""Connecting to the database: one SQLAlchemy engine per URL, tuned per backend, with errors made readable.

Used by ``Store.open`` and by the migration commands. SQLite runs in WAL mode with ``synchronous=NORMAL`` and a
busy timeout, and every writing transaction starts with ``BEGIN IMMEDIATE``: a deferred transaction that reads
and then writes can fail at once with "database is locked" when another process wrote in between, whatever the
busy timeout, while an immediate one simply waits its turn. The servers run at READ COMMITTED so that every
backend sees the same thing in the lock protocol (``database.locking``).

Every backend has timeouts (``Timeouts``), so that a server that accepts a connection and then never answers
gives an error instead of a hang: SQLite's busy timeout; PyMySQL's connect, read and write timeouts; psycopg's
``connect_timeout``, a server-side ``statement_timeout`` and a client-side wait on every answer (libpq has no
read timeout of its own, so the connection class waits with one: ``_TimedPgConnection``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from nebctl.core import jsontext
from nebctl.core.sqlite_files import use_write_ahead_log
from nebctl.database.errors import DatabaseError


@dataclass(frozen=True)
class Timeouts:
    """Seconds the database may take before nebctl gives up with an error (the ``database`` settings)."""

    connect: float = 10.0  # servers: to connect and log in
    read: float = 60.0  # servers: to answer a statement (a row lock waited for counts)
    write: float = 60.0  # servers: to accept what is sent
    busy: float = 30.0  # SQLite: for another writer to finish


DEFAULT_TIMEOUTS = Timeouts()

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


# What every engine is made with. The server backends also check a pooled connection before handing it out (a
# server may have closed it) and read committed data, as each transaction here expects.
_COMMON_OPTIONS: dict[str, Any] = {"json_deserializer": jsontext.loads}
_SERVER_OPTIONS: dict[str, Any] = {**_COMMON_OPTIONS, "isolation_level": "READ COMMITTED", "pool_pre_ping": True}


def safe_url(url: URL | str) -> str:
    """The URL with its password masked, fit for messages and logs."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except exc.ArgumentError:
            return "(invalid URL)"
    return url.render_as_string(hide_password=True)


def create(text: str, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> Engine:
    """An engine for ``text``; for a file-backed SQLite database, its directory is created when missing."""
    url = parse_url(text)
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(url, timeouts)
        if backend == "postgresql":
            return _postgresql_engine(url, timeouts)
        connect_args: dict[str, Any] = {
            "connect_timeout": max(1, round(timeouts.connect)),
            "read_timeout": timeouts.read,
            "write_timeout": timeouts.write,
        }
        return create_engine(url, **_SERVER_OPTIONS, connect_args=connect_args)
    except exc.NoSuchModuleError as error:
        raise DatabaseError(f"unknown database driver in {safe_url(url)}: {error}") from error
    except ModuleNotFoundError as error:
        package = _DRIVER_PACKAGES.get(error.name or "", error.name)
        raise DatabaseError(f"the driver for {safe_url(url)} is not installed: pip install '{package}'") from error


def _postgresql_engine(url: URL, timeouts: Timeouts) -> Engine:
    import psycopg

    connection_class = _timed_pg_connection(psycopg, timeouts.read)
    connect_args: dict[str, Any] = {
        # libpq counts whole seconds, and at least 2.
        "connect_timeout": max(2, round(timeouts.connect)),
        # The server gives up on a statement the client no longer waits for.
        "options": f"-c statement_timeout={int(timeouts.read * 1000)}",
        # Unacknowledged data on a dead link fails the connection instead of waiting for TCP's minutes.
        "tcp_user_timeout": int(timeouts.write * 1000),
    }
    engine = create_engine(url, **_SERVER_OPTIONS, connect_args=connect_args)

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, record: ConnectionPoolEntry, cargs: Any, cparams: dict[str, Any]) -> Any:
        try:
            return connection_class.connect(*cargs, **cparams)
        except psycopg.OperationalError as error:
            # libpq's words ("connection timeout expired") name no duration; say it as the read timeout does.
            if "timeout expired" not in str(error):
                raise
            seconds = cparams.get("connect_timeout", connect_args["connect_timeout"])
            raise psycopg.OperationalError(f"the server did not answer within {seconds}s (connect timeout)") from error

    return engine


def _timed_pg_connection(psycopg: Any, read_timeout: float) -> Any:
    """A psycopg connection class whose every wait for the server ends after ``read_timeout`` seconds."""
    from psycopg import errors

    class _TimedPgConnection(psycopg.Connection):  # type: ignore[misc]
        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            try:
                return super().wait(gen, interval=interval, timeout=read_timeout if timeout is None else timeout)
            except errors._WaitTimeout as error:
                # The protocol is mid-answer: the connection cannot be used again.
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"the server did not answer within {read_timeout:g}s (read timeout)"
                ) from error

    return _TimedPgConnection


def _sqlite_engine(url: URL, timeouts: Timeouts) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if in_memory:
        # One shared connection, or every new connection would see a new, empty database.
        engine = create_engine(url, **_COMMON_OPTIONS, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = Path(database).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DatabaseError(f"cannot create the directory of {path}: {error.strerror}") from error
        engine = create_engine(
            url, **_COMMON_OPTIONS, connect_args={"timeout": timeouts.busy, "check_same_thread": False}
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        # Let us issue BEGIN ourselves (below), instead of the driver's implicit deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            use_write_ahead_log(cursor, timeouts.busy)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeouts.busy * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        statement = "BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITE_OPTION, False) else "BEGIN"
        # On the driver's connection: through SQLAlchemy's execution, this took a third of a journal round.
        # Its errors (a database locked past the busy timeout) come out as SQLAlchemy's, as they did.
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        try:
            driver.execute(statement)
        except sqlite3.Error as error:
            raise exc.DBAPIError.instance(statement, (), error, sqlite3.Error) from error

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
