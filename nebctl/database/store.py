"""``Store``: the one entry point to nebctl's state database. Everything else calls its typed methods.

``Store.open(url)`` connects (SQLite file, MariaDB/MySQL or PostgreSQL), creates the schema on a new database and
refuses one whose schema is older or newer than this code. Each method is one short transaction and returns
frozen records (``database.records``); ``store.batch()`` groups several writes into one transaction. The CLI,
the executor, monitoring and the service receive a ``Store``; they never see SQLAlchemy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from nebctl.core.keys import ResourceKey
from nebctl.database import engines, leasing, locking, migrating
from nebctl.database.access import AccessOperations
from nebctl.database.engines import WRITE_OPTION, transaction, translated_errors
from nebctl.database.installing import InstallationOperations
from nebctl.database.operating import Clock, Fence
from nebctl.database.programs import ProgramOperations
from nebctl.database.records import LeaseRecord, LockRecord, ReplicaRecord
from nebctl.database.sealing import KeyRing
from nebctl.database.serving import ServingOperations
from nebctl.database.state import StateOperations
from nebctl.database.telemetry import TelemetryOperations
from nebctl.database.versions import PENDING, RESOURCES, CounterReader, Pending, VersionOperations, Versions


def utc_now() -> datetime:
    return datetime.now(UTC)


class _DataOperations(
    StateOperations,
    TelemetryOperations,
    AccessOperations,
    ServingOperations,
    ProgramOperations,
    InstallationOperations,
    VersionOperations,
):
    """Every data operation; shared by ``Store`` (a transaction each) and ``Batch`` (one for all)."""


class OwnWrites:
    """What a store (and those sharing its connections) committed while watched (``Store.own_writes``): how many
    times it raised the resources' change counter, and the records it wrote (saved or deleted). Whoever knows the
    counter before and reads it after tells from it that nobody else wrote meanwhile: each commit that raises a
    counter raises it by one, writers one after the other."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # an apply's journal commits from the executor's threads
        self._raised = 0
        self._written: set[ResourceKey] = set()

    def add(self, pending: Pending) -> None:
        with self._lock:
            self._raised += pending.raised.get(RESOURCES, 0)
            self._written |= pending.written

    @property
    def raised(self) -> int:
        """How many committed transactions raised the resources' change counter."""
        with self._lock:
            return self._raised

    @property
    def written(self) -> frozenset[ResourceKey]:
        """The records whose rows the committed transactions saved or deleted."""
        with self._lock:
            return frozenset(self._written)


class Batch(_DataOperations):
    """Operations that all commit together when the ``with store.batch()`` block ends, or not at all."""

    def __init__(self, connection: Connection, clock: Clock, secrets: KeyRing, fence: Fence | None = None) -> None:
        self._connection = connection
        self._clock = clock
        self._secrets = secrets
        self._fence = fence  # checked once, when the batch's transaction began

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        yield self._connection

    def _read(self) -> AbstractContextManager[Connection]:
        return self._write()


class Store(_DataOperations):
    """nebctl's state database. Open with ``Store.open(url)``; close when done (or use it as a context)."""

    def __init__(self, engine: Engine, clock: Clock, secrets: KeyRing | None = None) -> None:
        self._engine = engine
        self._clock = clock
        self._url = engine.url
        self._secrets = secrets or KeyRing.ephemeral()
        # An in-memory SQLite database has one connection, shared through the pool: nothing to keep beside it.
        self._counters = None if isinstance(engine.pool, StaticPool) else CounterReader(engine)
        self._kept: Connection | None = None  # the one connection of ``keeping_connection``, if in one
        self._watches: list[OwnWrites] = []  # shared with the stores sharing its connections (``_sharing``)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        clock: Callable[[], datetime] | None = None,
        timeouts: engines.Timeouts = engines.DEFAULT_TIMEOUTS,
        secrets: KeyRing | None = None,
    ) -> Store:
        """Connect to ``url`` and check its schema (creating it on a new database).

        Raises ``DatabaseError`` with one readable line for a bad URL, an unreachable server or bad
        credentials, ``SchemaOutdated`` for an older schema and ``SchemaTooNew`` for a newer one. ``secrets``
        seals the secrets of the specs written (``database.sealing``); without it, a key of this process only
        does, which only suits a store whose records no other process plans from (tests, tools).
        """
        engine = engines.create(url, timeouts)
        try:
            with translated_errors(engine.url, "cannot open the database"):
                _ensure_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock or utc_now, secrets)

    def close(self) -> None:
        if self._counters is not None:
            self._counters.close()
        self._engine.dispose()

    def change_versions(self) -> Versions:
        """Every change counter, in one read on the connection kept for them (``versions.CounterReader``)."""
        if self._counters is None:
            return super().change_versions()
        return self._counters.read()

    @property
    def local_reads(self) -> bool:
        """Whether reading the change counters is a local file read that never waits on the network (SQLite): a
        caller on an event loop may then read them in place rather than from a worker thread. Not for an in-memory
        database, whose one connection the worker threads share."""
        return self.backend == "sqlite" and self._counters is not None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The URL, password masked."""
        return engines.safe_url(self._url)

    @property
    def backend(self) -> str:
        """``sqlite``, ``mysql`` (also for MariaDB) or ``postgresql``."""
        return self._engine.dialect.name

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with translated_errors(self._url, "database write failed"), self._transaction(write=True) as conn:
            if self._fence is not None:
                leasing.check_fence(conn, self._fence)
            yield conn

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        begun = _begun(self._kept) if self._kept is not None else transaction(self._engine, write=write)
        with begun as connection:
            pending = Pending()
            connection.info[PENDING] = pending  # what ``versions.bump`` notes, told once committed
            yield connection
        # Only reached once committed: a transaction rolled back raised and wrote nothing.
        if pending.raised:
            for watch in list(self._watches):
                watch.add(pending)

    @contextmanager
    def own_writes(self) -> Iterator[OwnWrites]:
        """What this store (and those sharing its connections) commits until the block ends (``OwnWrites``)."""
        watch = OwnWrites()
        self._watches.append(watch)
        try:
            yield watch
        finally:
            self._watches.remove(watch)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with translated_errors(self._url, "database read failed"), self._transaction(write=False) as conn:
            yield conn

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Several writes in one transaction: ``with store.batch() as tx: tx.update_action(...); ...``."""
        with self._write() as connection:
            yield Batch(connection, self._clock, self._secrets, self._fence)

    # --- the writers' lock (database.locking) ----------------------------------------------

    def acquire_lock(
        self,
        name: str = locking.WRITERS,
        *,
        holder: str,
        timeout: float,
        ttl: float,
        host: str | None = None,
        pid: int | None = None,
        superseded: Callable[[LockRecord], bool] | None = None,
    ) -> locking.LockLease:
        """Take lock ``name`` (waiting up to ``timeout`` s) for ``ttl`` s, renewable; see ``database.locking``.

        ``host``/``pid`` default to this process; ``LockNotObtained`` names the holder, its host, pid and since.
        """
        with translated_errors(self._url, "cannot take the lock"):
            return locking.acquire(
                self._engine,
                self._clock,
                name,
                holder=holder,
                timeout=timeout,
                ttl=ttl,
                host=host,
                pid=pid,
                superseded=superseded,
            )

    def lock_status(self, name: str = locking.WRITERS) -> LockRecord | None:
        with translated_errors(self._url, "cannot read the lock"):
            return locking.read_lock(self._engine, name)

    def lock_is_stale(self, record: LockRecord) -> bool:
        """Whether the holder is gone (expired, or its pid is dead on this host): ``unlock`` may release it."""
        return locking.is_stale(record, clock=self._clock, host=locking.this_host())

    def force_unlock(self, name: str = locking.WRITERS) -> LockRecord | None:
        """Release the lock whoever holds it; returns the holder it had, or None if it was free."""
        with translated_errors(self._url, "cannot release the lock"):
            return locking.force_unlock(self._engine, name)

    # --- the leader lease of the service's replicas (database.leasing) ----------------------------------------

    def acquire_lease(
        self, name: str, holder: str, ttl: float, *, takeable: set[str] | None = None
    ) -> LeaseRecord | None:
        """Take or keep lease ``name`` for ``ttl`` s (the database's clock); the lease as it now is, whoever holds
        it (None when another replica took it at the same moment)."""
        with translated_errors(self._url, "cannot take the leader lease"):
            return leasing.acquire_lease(self._engine, name, holder, ttl, takeable=takeable or set())

    def renew_lease(self, name: str, holder: str, term: int, ttl: float) -> LeaseRecord | None:
        """Extend our lease of ``term``; None when it was lost."""
        with translated_errors(self._url, "cannot renew the leader lease"):
            return leasing.renew_lease(self._engine, name, holder, term, ttl)

    def release_lease(self, name: str, holder: str, term: int) -> bool:
        with translated_errors(self._url, "cannot release the leader lease"):
            return leasing.release_lease(self._engine, name, holder, term)

    def lease_status(self, name: str) -> tuple[LeaseRecord | None, datetime]:
        """The lease and the database's clock now."""
        with translated_errors(self._url, "cannot read the leader lease"):
            return leasing.read_lease(self._engine, name)

    def heartbeat(
        self, *, replica: str, lease: str, host: str, pid: int, listen: str | None, role: str, term: int | None
    ) -> None:
        with translated_errors(self._url, "cannot record the replica's heartbeat"):
            leasing.heartbeat(
                self._engine, replica=replica, lease=lease, host=host, pid=pid, listen=listen, role=role, term=term
            )

    def list_replicas(self, lease: str) -> tuple[list[ReplicaRecord], datetime]:
        """The replicas of ``lease`` and the database's clock now."""
        with translated_errors(self._url, "cannot read the replicas"):
            return leasing.list_replicas(self._engine, lease)

    def forget_replicas(self, lease: str, *, ids: set[str] | None = None, silent_for: float | None = None) -> int:
        with translated_errors(self._url, "cannot forget replicas"):
            return leasing.forget_replicas(self._engine, lease, ids=ids, silent_for=silent_for)

    def fenced(self, fence: Fence) -> Store:
        """This store (same connections) with every write checked against ``fence`` in its own transaction, and
        the journal's entries marked with its term: what a service replica acts through."""
        store = self._sharing()
        store._fence = fence
        return store

    @contextmanager
    def keeping_connection(self) -> Iterator[Store]:
        """This store, every transaction of which runs on one connection kept until the block ends, for one
        thread only: an apply's journal, which commits a short transaction per round of changes on the
        executor's critical path. Checking a connection out of the pool and resetting it at each return cost
        about a fifth of such a transaction on SQLite. Elsewhere, the pool's checks of a connection (a server
        that restarted) are worth their cost, so the store is handed back as it is."""
        if self.backend != "sqlite" or self._counters is None:
            yield self
            return
        store = self._sharing()
        with translated_errors(self._url, "cannot connect to the database"):
            connection = self._engine.connect()
        try:
            connection.execution_options(**{WRITE_OPTION: True})
            store._kept = connection
            yield store
        finally:
            store._kept = None
            connection.close()

    def _sharing(self) -> Store:
        """A store on the same engine, keys and fence; closed with this one."""
        store = Store(self._engine, self._clock, self._secrets)
        store._fence = self._fence
        store._counters = self._counters  # one kept connection for the counters, closed with this store
        store._watches = self._watches  # what it commits is this store's own writing
        return store


@contextmanager
def _begun(connection: Connection) -> Iterator[Connection]:
    with connection.begin():
        yield connection


def _ensure_schema(engine: Engine) -> None:
    try:
        with transaction(engine, write=True) as connection:
            migrating.ensure_schema(connection)
    except exc.DBAPIError:
        # Two processes creating the same new database race (on the servers, DDL is not serialised for us);
        # the loser finds the winner's complete schema and goes on. Anything else is a real error.
        try:
            with transaction(engine, write=False) as connection:
                created = migrating.current_revision(connection) == migrating.head_revision()
        except exc.SQLAlchemyError:
            created = False
        if not created:
            raise
