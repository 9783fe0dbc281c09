"""The SQLite file that holds the simulated fleet, shared by every thread and process that opens it.

Used by ``sim.fleet.SimFleet`` only. Each thread gets its own connection (sqlite3 connections must not be used
by two threads at once); the file runs in WAL mode so readers never wait for the writer, with a busy timeout so
concurrent writers from other processes queue instead of failing. Writes are short ``BEGIN IMMEDIATE``
transactions: taking the write lock up front avoids the deadlock two deferred transactions hit when both try to
upgrade from reading to writing. The writers of one process also queue on a lock of their own (one per file):
SQLite's busy handler waits by sleeping, 1 ms, then 2, 5, 10 ms and longer, so sixteen threads of an apply
fighting for the file slept far longer than the writes took; a lock hands over to the next writer at once.

The file also counts its own changes (triggers on every table a probe reads, so no writer can forget): the
monitoring driver's ``observation_token`` reads that count, which lets a caller tell, with one query, that the
fleet is as it was when it last probed it; and each host's (``host_tokens``), which tells the hosts that moved.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from nebctl.core.sqlite_files import use_write_ahead_log
from nebctl.drivers.errors import PermanentError, TemporaryError

SCHEMA_VERSION = 2  # 2: vms.macs, the MACs of each VM's NICs (comma-separated), which its status reports

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY, uri TEXT NOT NULL, cpus INTEGER NOT NULL, memory INTEGER NOT NULL,
    disk INTEGER NOT NULL, down INTEGER NOT NULL DEFAULT 0, reason TEXT
);
CREATE TABLE IF NOT EXISTS vms (
    uuid TEXT PRIMARY KEY, host TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    vcpu INTEGER NOT NULL, memory INTEGER NOT NULL, definition TEXT NOT NULL, owner TEXT,
    started REAL, created REAL NOT NULL, macs TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS vms_by_host ON vms (host, name);
CREATE TABLE IF NOT EXISTS datastores (
    host TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL, type TEXT NOT NULL, owner TEXT,
    PRIMARY KEY (host, name)
);
CREATE TABLE IF NOT EXISTS volumes (
    host TEXT NOT NULL, datastore TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
    capacity INTEGER NOT NULL, allocation INTEGER NOT NULL, format TEXT NOT NULL, backing TEXT,
    sha256 TEXT, source TEXT, owner TEXT, PRIMARY KEY (host, datastore, name)
);
CREATE TABLE IF NOT EXISTS snapshots (
    host TEXT NOT NULL, datastore TEXT NOT NULL, volume TEXT NOT NULL, name TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (host, datastore, volume, name)
);
CREATE TABLE IF NOT EXISTS networks (
    host TEXT NOT NULL, name TEXT NOT NULL, definition TEXT NOT NULL, owner TEXT, PRIMARY KEY (host, name)
);
CREATE TABLE IF NOT EXISTS leases (
    host TEXT NOT NULL, network TEXT NOT NULL, mac TEXT NOT NULL, ip TEXT NOT NULL, vm_uuid TEXT NOT NULL,
    groups TEXT NOT NULL DEFAULT '[]', bound INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (host, network, mac)
);
CREATE UNIQUE INDEX IF NOT EXISTS leases_by_ip ON leases (host, network, ip);
CREATE TABLE IF NOT EXISTS security_groups (
    host TEXT NOT NULL, name TEXT NOT NULL, rules TEXT NOT NULL, owner TEXT, PRIMARY KEY (host, name)
);
CREATE TABLE IF NOT EXISTS host_changes (host TEXT PRIMARY KEY, changes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS behaviours (
    id INTEGER PRIMARY KEY, action TEXT NOT NULL, host TEXT, kind TEXT NOT NULL,
    probability REAL, remaining INTEGER, duration REAL, distribution TEXT, a REAL, b REAL, message TEXT
);
CREATE INDEX IF NOT EXISTS behaviours_by_action ON behaviours (action);
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, secret TEXT NOT NULL, groups TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS denials (subject TEXT NOT NULL, action TEXT NOT NULL, PRIMARY KEY (subject, action));
CREATE TABLE IF NOT EXISTS appliances (
    marketplace TEXT NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL, sha256 TEXT NOT NULL, format TEXT,
    size INTEGER, description TEXT NOT NULL DEFAULT '', PRIMARY KEY (marketplace, name)
);
CREATE TABLE IF NOT EXISTS hook_runs (
    id INTEGER PRIMARY KEY, hook TEXT NOT NULL, payload TEXT NOT NULL, time REAL NOT NULL
);
"""

# Every table whose rows a probe or a listing reads. Each row written to one of them, by any connection (this
# driver, ``nebctl sim``, a test's own sqlite3), raises the file's change count in the same transaction:
# ``changes()`` then tells two reads of the same fleet apart from two reads of different ones.
_COUNTED = ("hosts", "vms", "datastores", "volumes", "snapshots", "networks", "leases", "security_groups", "behaviours")
_COUNTING = "".join(
    f"CREATE TRIGGER IF NOT EXISTS count_{table}_{event.lower()} AFTER {event} ON {table} "
    "BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'changes'; END;"
    for table in _COUNTED
    for event in ("INSERT", "UPDATE", "DELETE")
)


# Each host's own count besides: every row of those tables belongs to one host (its ``host``; a host's own row, its
# ``name``), and a row written raises the count of its host (of both, for a row moved from one host to another).
# ``host_changes()`` then tells which hosts moved since an observation, so that only those are probed again.
_HOST_COLUMNS = {table: "name" if table == "hosts" else "host" for table in _COUNTED if table != "behaviours"}


def _raise_count(row: str, column: str) -> str:
    return (
        f"INSERT INTO host_changes VALUES ({row}.{column}, 1) ON CONFLICT (host) DO UPDATE SET changes = changes + 1;"
    )


_COUNTING_BY_HOST = "".join(
    f"CREATE TRIGGER IF NOT EXISTS count_{table}_{event.lower()}_by_host AFTER {event} ON {table} BEGIN "
    + "".join(_raise_count(row, column) for row in rows)
    + " END;"
    for table, column in _HOST_COLUMNS.items()
    for event, rows in (("INSERT", ("NEW",)), ("UPDATE", ("OLD", "NEW")), ("DELETE", ("OLD",)))
)


def _upgrade(connection: sqlite3.Connection) -> None:
    """Bring a fleet file an older nebctl wrote up to ``SCHEMA_VERSION`` (a new file is created at 1 and goes
    through the same steps, so there is one path)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = int(connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0])
        if version < 2:
            columns = {row[1] for row in connection.execute("PRAGMA table_info(vms)")}
            if "macs" not in columns:
                connection.execute("ALTER TABLE vms ADD COLUMN macs TEXT NOT NULL DEFAULT ''")
            # Each VM's MACs, from the definition it was deployed with (its NICs, in order).
            for uuid, definition in connection.execute("SELECT uuid, definition FROM vms").fetchall():
                nics = json.loads(definition).get("nics") or []
                connection.execute(
                    "UPDATE vms SET macs = ? WHERE uuid = ?", (",".join(str(nic["mac"]) for nic in nics), uuid)
                )
        connection.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


# The in-process writers' lock of each fleet file, by its resolved path: every ``Store`` of one file shares it.
_WRITERS: dict[Path, threading.Lock] = {}
_WRITERS_LOCK = threading.Lock()


def _writers_lock(path: Path) -> threading.Lock:
    key = path.resolve()
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(key, threading.Lock())


def _translate(error: sqlite3.Error, path: Path) -> Exception:
    """SQLite errors at the driver edge: a locked file may clear up, anything else will not."""
    text = str(error)
    if isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return TemporaryError(f"sim fleet file {path} is busy: {text}", driver="sim", delay=0.05)
    return PermanentError(f"sim fleet file {path}: {text}", driver="sim")


class Store:
    """Per-thread connections to one fleet file, and the transaction helpers the fleet uses."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        # Each connection with the thread that opened it: a thread that is gone leaves its connection behind.
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writers = _writers_lock(path)
            connection = self.connection()
            # The file's identity (a new file, even at the same path, counts its changes from 0 again).
            identity = os.urandom(16).hex()
            connection.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} {_COUNTING} {_COUNTING_BY_HOST}"
                " INSERT OR IGNORE INTO meta VALUES ('schema', '1');"
                f" INSERT OR IGNORE INTO meta VALUES ('identity', '{identity}');"
                " INSERT OR IGNORE INTO meta VALUES ('changes', '0'); COMMIT;"
            )
            _upgrade(connection)
        except (sqlite3.Error, OSError) as error:
            self.close()
            if isinstance(error, sqlite3.Error):
                raise _translate(error, path) from error
            raise PermanentError(f"cannot create sim fleet file {path}: {error}", driver="sim") from error

    def connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        if self._closed:
            raise PermanentError(f"sim fleet file {self.path} was closed", driver="sim")
        # check_same_thread is off only so that close() may close every thread's connection; each connection
        # is still used by the one thread that opened it.
        connection = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        use_write_ahead_log(connection, self._busy_timeout)
        # NORMAL in WAL mode skips the fsync per commit; a simulated fleet may lose its last commit on power loss.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        self._local.connection = connection
        with self._lock:
            # Threads come and go (a probe pool per observation, an executor per apply): the connections of
            # those that ended are closed here, or a long-running service would keep one per thread it ever had.
            kept = []
            for thread, other in self._connections:
                if thread.is_alive():
                    kept.append((thread, other))
                else:
                    other.close()
            kept.append((threading.current_thread(), connection))
            self._connections = kept
        return connection

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction, taking the lock at its start."""
        connection = self.connection()
        if not self._writers.acquire(timeout=self._busy_timeout):
            raise TemporaryError(f"sim fleet file {self.path} is busy: another thread kept writing", driver="sim")
        try:
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise _translate(error, self.path) from error
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as error:
                connection.execute("ROLLBACK")
                raise _translate(error, self.path) from error
        finally:
            self._writers.release()

    def read(self) -> sqlite3.Connection:
        """The thread's connection in autocommit mode: each statement sees the latest committed state."""
        return self.connection()

    def changes(self) -> str:
        """The file's identity and its change count, as one word: equal words are the same rows in every counted
        table (a commit that changed any row raised the count)."""
        rows = dict(self.read().execute("SELECT key, value FROM meta WHERE key IN ('identity', 'changes')"))
        return f"{rows['identity']}:{rows['changes']}"

    def host_changes(self) -> tuple[str, dict[str, int]]:
        """The file's identity and each host's own change count (a host none of whose rows was ever written has
        none): equal counts of one host in one file are the same rows of that host in every counted table."""
        connection = self.read()
        identity = connection.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()[0]
        return str(identity), dict(connection.execute("SELECT host, changes FROM host_changes"))

    def translate(self, error: sqlite3.Error) -> Exception:
        return _translate(error, self.path)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for _thread, connection in connections:
            connection.close()
        self._local = threading.local()
