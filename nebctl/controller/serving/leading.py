"""Leader election among the replicas of ``nebctl serve`` that share one database: ``Leadership``.

Each replica runs one ``Leadership``. Its thread tries to take the stack's lease every ``retry`` seconds while it
follows, and renews it every ``renew`` seconds while it leads (``database.leasing``: the database's clock, a term
that grows at every change of holder). Whatever the thread is doing, a leader counts itself as leading only until
``duration`` seconds after the start of its last successful renewal (its own monotonic clock, which runs no faster
than the database's), so a leader cut off from the database stops acting before another can take over; and every
write it makes is fenced by its term in the database anyway, which is what holds when the process was paused.

The replica records a heartbeat (``replicas``) every ``renew`` seconds, for ``nebctl status``. On SQLite only
one replica may run: a second one on the same file is refused (``ReplicaRefused``). Used by ``service.Service``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from nebctl.controller.serving.eventing import EventSink
from nebctl.controller.serving.metrics import ServiceMetrics
from nebctl.database.errors import DatabaseError
from nebctl.database.locking import process_alive, this_host
from nebctl.database.operating import Fence
from nebctl.database.records import LeaseRecord, Severity
from nebctl.database.store import Store

log = logging.getLogger("nebctl.serve")

LEADER = "leader"
FOLLOWER = "follower"
FORGET_AFTER = 3600.0  # seconds without a heartbeat after which a replica's row is deleted by the leader


def lease_name(stack: str) -> str:
    """The lease the replicas of ``stack`` elect their leader with."""
    return f"serve/{stack}"


@dataclass(frozen=True)
class LeaseTiming:
    """Seconds: how long a lease lasts, how often the leader renews it, how often a follower tries to take it."""

    duration: float = 15.0
    renew: float = 5.0
    retry: float = 2.0


class ReplicaRefused(Exception):  # noqa: N818  (reads as a sentence: raise ReplicaRefused)
    """A second replica on a database that cannot hold several (SQLite)."""


class Leadership:
    def __init__(
        self,
        store: Store,
        *,
        stack: str,
        replica: str,
        listen: str | None,
        timing: LeaseTiming,
        events: EventSink,
        metrics: ServiceMetrics,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.stack = stack
        self.lease = lease_name(stack)
        self.replica = replica
        self.listen = listen
        self.timing = timing
        self.events = events
        self.metrics = metrics
        self.on_change = on_change
        self.fence = Fence(self.lease, replica)  # its term is the term we lead in, None while we follow
        self.host = this_host()
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._valid_until = 0.0
        self._seen: LeaseRecord | None = None  # the lease as last read: who leads, in which term
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_heartbeat = 0.0
        self._next_forget = 0.0
        self._unreachable = False
        metrics.leader.labels(replica).set(0)

    # --- what the service asks ----------------------------------------------------------------------------

    @property
    def term(self) -> int | None:
        """The term we lead in, or None: we follow, or our lease ran out by our own clock."""
        with self._lock:
            if self.fence.term is not None and time.monotonic() < self._valid_until:
                return self.fence.term
            return None

    @property
    def role(self) -> str:
        return LEADER if self.term is not None else FOLLOWER

    def leader(self) -> LeaseRecord | None:
        """The lease as this replica last saw it."""
        with self._lock:
            return self._seen

    def start(self) -> None:
        """Try once to lead (so that a lone replica leads at once), then keep trying in a thread.

        ``ReplicaRefused`` when the database is SQLite and another live replica of the stack holds it. Calling it
        again does nothing."""
        if self._thread is not None:
            return
        self._attempt()
        if self.store.backend == "sqlite" and self.fence.term is None:
            self._attempt()  # now that the holder is known: it may be a process of this host that is gone
        if self.store.backend == "sqlite" and self.fence.term is None:
            seen = self.leader()
            holder = seen.holder if seen is not None else "another replica"
            raise ReplicaRefused(
                f"stack {self.stack} is already served by {holder} on this SQLite database ({self.store.url}); "
                "SQLite holds one replica of nebctl serve: run several replicas on PostgreSQL or MariaDB/MySQL"
            )
        self._heartbeat()
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)
        self._thread.start()

    def lost(self, term: int, reason: str) -> None:
        """A write of ``term`` was refused by fencing: stop acting now rather than at the next renewal."""
        with self._lock:
            current = self.fence.term
        if current == term:
            self._demote(reason)

    def stop(self) -> None:
        """Stop electing; a leader releases its lease, so that another replica takes over at once."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            term = self.fence.term
            self.fence.term = None
        try:
            if term is not None and self.store.release_lease(self.lease, self.replica, term):
                self.events.emit(
                    "leader.released",
                    f"replica {self.replica} released the leadership of stack {self.stack} (term {term})",
                    stack=self.stack,
                    data={"replica": self.replica, "term": term},
                )
            self.store.forget_replicas(self.lease, ids={self.replica})
        except DatabaseError as error:
            log.error("cannot release the leader lease of stack %s: %s", self.stack, error)
        self.metrics.leader.labels(self.replica).set(0)

    # --- the thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._attempt()
            self._heartbeat()
            leading = self.fence.term is not None
            self._stopped.wait(self.timing.renew if leading else self.timing.retry)

    def _attempt(self) -> None:
        started = time.monotonic()
        with self._lock:
            term = self.fence.term
        try:
            if term is not None:
                renewed = self.store.renew_lease(self.lease, self.replica, term, self.timing.duration)
                if renewed is None:
                    self._demote(f"its lease of term {term} was lost or expired before it was renewed")
                else:
                    with self._lock:
                        self._valid_until = started + self.timing.duration
                        self._seen = renewed
                    self._reachable()
                    return
            seen = self.store.acquire_lease(
                self.lease, self.replica, self.timing.duration, takeable=self._takeable(self._seen)
            )
            self._reachable()
        except DatabaseError as error:
            if not self._unreachable:
                log.warning("leader election of stack %s: %s", self.stack, error)
                self._unreachable = True
            if term is not None and time.monotonic() >= self._valid_until:
                self._demote("the database did not answer before its lease ran out")
            return
        if seen is None:
            return
        self._observe(seen)
        if seen.holder == self.replica:
            self._promote(seen, started)

    def _reachable(self) -> None:
        if self._unreachable:
            log.warning("leader election of stack %s: the database answers again", self.stack)
            self._unreachable = False

    def _takeable(self, seen: LeaseRecord | None) -> set[str]:
        """On SQLite, every replica runs on this host: a holder whose process is gone may be replaced at once."""
        if seen is None or self.store.backend != "sqlite":
            return set()
        replicas, _ = self.store.list_replicas(self.lease)
        for replica in replicas:
            if replica.id == seen.holder and replica.host == self.host and not process_alive(replica.pid):
                return {replica.id}
        return set()

    def _observe(self, seen: LeaseRecord) -> None:
        with self._lock:
            previous = self._seen
            self._seen = seen
        if previous is None or previous.term != seen.term:
            self.metrics.lease_term.set(seen.term)
            if previous is not None:
                self.metrics.leader_changes.inc()

    def _promote(self, lease: LeaseRecord, started: float) -> None:
        with self._lock:
            self.fence.term = lease.term
            self._valid_until = started + self.timing.duration
        self.metrics.leader.labels(self.replica).set(1)
        self.metrics.lease_term.set(lease.term)
        self.events.emit(
            "leader.elected",
            f"replica {self.replica} leads stack {self.stack} (term {lease.term})",
            stack=self.stack,
            data={"replica": self.replica, "term": lease.term, "host": self.host, "pid": self.pid},
        )
        self._heartbeat(force=True)
        self.on_change()

    def _demote(self, reason: str) -> None:
        with self._lock:
            term = self.fence.term
            if term is None:
                return
            self.fence.term = None
            self._valid_until = 0.0
        self.metrics.leader.labels(self.replica).set(0)
        self.events.emit(
            "leader.lost",
            f"replica {self.replica} no longer leads stack {self.stack} (term {term}): {reason}; it follows",
            severity=Severity.WARNING,
            stack=self.stack,
            data={"replica": self.replica, "term": term, "reason": reason},
        )
        self._heartbeat(force=True)
        self.on_change()

    def _heartbeat(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.timing.renew
        term = self.term
        try:
            self.store.heartbeat(
                replica=self.replica,
                lease=self.lease,
                host=self.host,
                pid=self.pid,
                listen=self.listen,
                role=LEADER if term is not None else FOLLOWER,
                term=term,
            )
            if term is not None and now >= self._next_forget:
                self._next_forget = now + 60
                self.store.forget_replicas(self.lease, silent_for=FORGET_AFTER)
        except DatabaseError as error:
            log.debug("heartbeat of replica %s: %s", self.replica, error)
