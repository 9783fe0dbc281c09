"""The writers' lock (docs/database.md, ``locks``), on any of the three databases.

A lock is one row of ``locks``, keyed by its name. Taking a free lock is an INSERT, which the primary key lets
only one process win. Taking a stale lock (expired, or held by a dead process on this host) is a compare-and-swap:
``UPDATE locks ... WHERE name = ? AND token = <the token we saw>``. Every backend makes a concurrent second UPDATE
wait for the first and then re-check its WHERE clause against the committed row (PostgreSQL and MariaDB at READ
COMMITTED re-read the row they lock; SQLite has one writer at a time), so of two processes that both saw the same
stale holder only one matches the old token. Renewing and releasing are conditional on our own token too, so a
holder that lost its lock cannot extend or delete someone else's.

Used by ``Store.acquire_lock`` (apply, destroy, the service) and ``nebctl unlock``.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from sqlalchemy import delete, exc, insert, select, update
from sqlalchemy.engine import Engine

from nebctl.database.engines import describe_error, transaction
from nebctl.database.errors import LockLost, LockNotObtained
from nebctl.database.models import Lock
from nebctl.database.operating import AnyRow, Clock, table
from nebctl.database.records import LockRecord

logger = logging.getLogger(__name__)

_locks = table(Lock)

WRITERS = "writers"
POLL_INTERVAL = 0.1  # seconds between attempts while waiting (jittered, so waiters do not move in step)


def this_host() -> str:
    return socket.gethostname()


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host; a zombie (killed, not yet reaped) counts as dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (not Linux): trust kill()
    # The state follows the parenthesised command name, which may itself contain spaces or parentheses.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _lock(row: AnyRow) -> LockRecord:
    return LockRecord(
        name=row.name,
        holder=row.holder,
        host=row.host,
        pid=row.pid,
        acquired_at=row.acquired_at,
        expires_at=row.expires_at,
        token=row.token,
    )


class LockLease:
    """A held lock: renew it before its ttl runs out (or ``start_renewing``), release it when done.

    A context manager: leaving the block releases the lock.
    """

    def __init__(self, engine: Engine, clock: Clock, record: LockRecord, ttl: float) -> None:
        self._engine = engine
        self._clock = clock
        self.record = record
        self.ttl = ttl
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.record.name

    def renew(self, ttl: float | None = None) -> None:
        """Push the expiry to now + ttl; ``LockLost`` if someone took the lock over meanwhile."""
        ttl = self.ttl if ttl is None else ttl
        expires = self._clock() + timedelta(seconds=ttl)
        statement = (
            update(_locks)
            .where(_locks.c.name == self.record.name, _locks.c.token == self.record.token)
            .values(expires_at=expires)
        )
        with transaction(self._engine, write=True) as connection:
            renewed = connection.execute(statement).rowcount > 0
        if not renewed:
            self.lost = True
            raise LockLost(f"lock {self.record.name!r} was taken over or forced open while we held it")

    def start_renewing(self, interval: float | None = None) -> None:
        """Renew in a background thread every ``interval`` seconds (a third of the ttl by default)."""
        if self._renewer is not None:
            return
        period = interval if interval is not None else max(self.ttl / 3, 0.05)

        def renew_until_stopped() -> None:
            while not self._stop.wait(period):
                try:
                    self.renew()
                except LockLost:
                    logger.error("lock %r was lost; another writer may be running", self.record.name)
                    return
                except Exception as error:  # a database hiccup: the next period retries, the ttl gives us slack
                    # One line: a failing database is reported by the command that uses it, once.
                    logger.warning("could not renew lock %r: %s", self.record.name, describe_error(error))

        self._renewer = threading.Thread(target=renew_until_stopped, name=f"lock-{self.name}", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        """Give the lock up (only if it is still ours); calling it twice is harmless."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        statement = delete(_locks).where(_locks.c.name == self.record.name, _locks.c.token == self.record.token)
        with transaction(self._engine, write=True) as connection:
            connection.execute(statement)

    def __enter__(self) -> LockLease:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def read_lock(engine: Engine, name: str) -> LockRecord | None:
    with transaction(engine, write=False) as connection:
        row = connection.execute(select(_locks).where(_locks.c.name == name)).first()
    return _lock(row) if row is not None else None


def is_stale(record: LockRecord, *, clock: Clock, host: str) -> bool:
    """Whether a held lock may be taken: it expired, or its process is gone from this very host."""
    if record.expires_at <= clock():
        return True
    return record.host == host and not process_alive(record.pid)


def acquire(
    engine: Engine,
    clock: Clock,
    name: str,
    *,
    holder: str,
    timeout: float,
    ttl: float,
    host: str | None = None,
    pid: int | None = None,
    superseded: Callable[[LockRecord], bool] | None = None,
) -> LockLease:
    """Take lock ``name``, waiting up to ``timeout`` seconds; ``LockNotObtained`` names the holder.

    ``superseded`` says of a holder that it may be taken over although it lives: a service replica that lost
    its leader lease, whose writes are refused anyway (``database.leasing``)."""
    if ttl <= 0:
        raise ValueError("a lock needs a positive ttl")
    host = host or this_host()
    pid = pid if pid is not None else os.getpid()
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        now = clock()
        candidate = LockRecord(
            name=name,
            token=uuid.uuid4().hex,
            holder=holder,
            host=host,
            pid=pid,
            acquired_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
        mine = asdict(candidate)
        try:
            with transaction(engine, write=True) as connection:
                connection.execute(insert(_locks).values(mine))
            return LockLease(engine, clock, candidate, ttl)
        except exc.IntegrityError:
            pass  # held: see by whom
        except exc.DBAPIError as error:
            # Inserts waiting on a row that its holder deletes can deadlock (InnoDB takes their duplicate-key
            # locks first): the server rolls one back; for that process the lock was simply contended.
            if not deadlocked(error):
                raise
        current = read_lock(engine, name)
        if current is None:
            continue  # released between our insert and our read: try again at once
        if is_stale(current, clock=clock, host=host) or (superseded is not None and superseded(current)):
            statement = update(_locks).where(_locks.c.name == name, _locks.c.token == current.token).values(mine)
            try:
                with transaction(engine, write=True) as connection:
                    taken = connection.execute(statement).rowcount > 0
            except exc.DBAPIError as error:
                if not deadlocked(error):
                    raise
                taken = False
            if taken:
                logger.warning("took over lock %r from %s, which is gone", name, current.describe())
                return LockLease(engine, clock, candidate, ttl)
            continue  # another process took it over first; look again
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockNotObtained(f"lock {name!r} is held by {current.describe()}", holder=current)
        time.sleep(min(remaining, POLL_INTERVAL * random.uniform(0.5, 1.5)))


# The errors of a transaction the server rolled back to break a deadlock: MySQL/MariaDB's ER_LOCK_DEADLOCK,
# PostgreSQL's deadlock_detected (SQLite has one writer at a time and never deadlocks).
_DEADLOCK_CODES = (1213, "40P01")


def deadlocked(error: exc.DBAPIError) -> bool:
    original = error.orig
    # psycopg gives the SQLSTATE; PyMySQL the error number first, and since 1.1 a SQLSTATE too (40001).
    arguments = getattr(original, "args", ())
    codes = {getattr(original, "sqlstate", None), arguments[0] if arguments else None}
    return any(code in _DEADLOCK_CODES for code in codes)


def force_unlock(engine: Engine, name: str) -> LockRecord | None:
    """Delete the lock whoever holds it; returns the holder it had."""
    current = read_lock(engine, name)
    if current is None:
        return None
    with transaction(engine, write=True) as connection:
        connection.execute(delete(_locks).where(_locks.c.name == name, _locks.c.token == current.token))
    return current
