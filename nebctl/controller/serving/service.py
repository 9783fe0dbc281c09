"""``Service``: the loop of ``nebctl serve``. It re-plans one stack when its source changes (debounced), on the
resync interval (with jitter), on a ``nebctl sync`` request, when monitoring sees a VM drift or a host come
back, and when a resource's heal backoff expires; it runs monitoring alongside, and stops cleanly.

Everything happens in the thread that calls ``run`` except monitoring (its own thread and pool), the source's
watcher and the HTTP server (``nebctl.api``), which only read what ``ready`` and the metrics say. ``stop``
(SIGTERM) makes the running apply start no new action and wait for the running ones; ``run`` then returns,
with the lock released. A process killed outright leaves an unfinished apply, which the next start resumes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from nebctl.controller.applying import Controller
from nebctl.controller.observing import DriverSource, known_hosts
from nebctl.controller.probing import CustomProbes
from nebctl.controller.revisions import GitError
from nebctl.controller.serving.eventing import EventSink
from nebctl.controller.serving.metrics import ServiceMetrics
from nebctl.controller.serving.monitoring import ExpectedVM, Monitor
from nebctl.controller.serving.sources import Snapshot, Source
from nebctl.controller.serving.syncing import StackSyncer, SyncResult
from nebctl.core.keys import Kind
from nebctl.core.settings import Settings
from nebctl.database.errors import DatabaseError
from nebctl.database.records import Severity, SyncStatus
from nebctl.database.store import Store

log = logging.getLogger(__name__)


class Service:
    def __init__(
        self,
        *,
        store: Store,
        registry: DriverSource,
        settings: Settings,
        source: Source,
        stack: str,
        self_heal: bool | None = None,
        prune: bool | None = None,
        parallelism: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        serve = settings.serve
        self.store = store
        self.settings = settings
        self.serve = serve
        self.source = source
        self.stack = stack
        self.clock = clock
        self.metrics = ServiceMetrics()
        self.events = EventSink(store)
        self.stopping = threading.Event()
        self._wake = threading.Condition()
        self._reasons: set[str] = set()
        self._changed_at: float | None = None
        self._snapshot: Snapshot | None = None
        self._fired: float | None = None  # the last backoff deadline that made a sync
        probes = CustomProbes(settings.probes_dir, timeout=serve.probe_timeout) if settings.probes_dir else None
        self.monitor = Monitor(
            store=store,
            registry=registry,
            serve=serve,
            events=self.events,
            metrics=self.metrics,
            on_drift=lambda why: self.trigger(f"monitoring: {why}"),
            probes=probes,
            clock=clock,
        )
        self.controller = Controller(
            store=store,
            registry=registry,
            settings=settings,
            host_attributes=self.monitor.attributes if probes is not None else None,
        )
        self.self_heal = serve.self_heal_for(stack) if self_heal is None else self_heal
        self.prune = serve.prune_for(stack, settings.prune) if prune is None else prune
        self.syncer = StackSyncer(
            stack=stack,
            controller=self.controller,
            serve=serve,
            events=self.events,
            metrics=self.metrics,
            self_heal=self.self_heal,
            prune=self.prune,
            parallelism=parallelism,
            hosts_in_error=self.monitor.hosts_in_error,
            source=source.describe(),
            clock=clock,
        )

    # --- what the HTTP layer and the signal handlers call -------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether the service can do its job: the database answers and the source was loaded."""
        checks: dict[str, Any] = {"source": self._snapshot is not None}
        try:
            self.store.stack_status(self.stack)
            checks["database"] = True
        except DatabaseError as error:
            checks["database"] = False
            checks["database_error"] = str(error)
        return bool(checks["source"] and checks["database"]), checks

    def trigger(self, reason: str) -> None:
        with self._wake:
            self._reasons.add(reason)
            self._wake.notify_all()

    def stop(self) -> None:
        """Stop starting actions; ``run`` returns once the running ones are done."""
        self.stopping.set()
        with self._wake:
            self._wake.notify_all()

    def _source_changed(self) -> None:
        with self._wake:
            self._changed_at = time.monotonic()
            self._wake.notify_all()

    # --- the loop -------------------------------------------------------------------------------------------------

    def _interval(self) -> float:
        return self.serve.interval * (1 + random.uniform(0, self.serve.jitter))

    def run(self) -> None:  # noqa: PLR0915 - the service's one loop: start, watch, resync, heal, stop, in order
        mode = "self-heal" if self.self_heal else "report-only"
        self.events.emit(
            "service.started",
            f"nebctl serve reconciles stack {self.stack} ({mode}) from {self.source.describe()}",
            stack=self.stack,
            data={"source": self.source.describe(), "self_heal": self.self_heal, "prune": self.prune},
        )
        stop_watching = self.source.watch(self._source_changed)
        self.monitor.start()
        reload = fetch = True
        reasons = {"start"}
        now = time.monotonic()
        next_resync = now + self._interval()
        next_poll = now + self.serve.request_poll
        retry_at: float | None = None
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                with self._wake:
                    reasons |= self._reasons
                    self._reasons.clear()
                    if self._changed_at is not None and now - self._changed_at >= self.serve.debounce:
                        self._changed_at = None
                        reasons.add("change")
                        reload = True
                if now >= next_resync:
                    reasons.add("resync")
                    reload = fetch = True
                    next_resync = now + self._interval()
                if now >= next_poll:
                    next_poll = now + self.serve.request_poll
                    if self._requested():
                        reasons.add("request")
                        reload = fetch = True
                deadline = self.syncer.next_deadline()
                if deadline is not None and deadline != self._fired and self.clock() >= deadline - 0.01:
                    reasons.add("backoff")
                    self._fired = deadline  # each deadline once: a failed heal sets the next one
                if retry_at is not None and now >= retry_at:
                    reasons.add("retry")
                    retry_at = None
                if reasons:
                    if fetch:
                        reload |= self._fetch()
                    if reload or self._snapshot is None:
                        self._snapshot = self.source.load()
                    reload = fetch = False
                    result = self._sync(self._snapshot, ", ".join(sorted(reasons)))
                    reasons = set()
                    if result is not None and result.retry_after is not None:
                        retry_at = time.monotonic() + result.retry_after
                    continue
                self._sleep(next_resync, next_poll, retry_at)
        finally:
            stop_watching()
            self.monitor.stop()
            self.events.emit("service.stopped", f"nebctl serve of stack {self.stack} stopped", stack=self.stack)

    def _sleep(self, next_resync: float, next_poll: float, retry_at: float | None) -> None:
        now = time.monotonic()
        wakes = [next_resync, next_poll]
        if retry_at is not None:
            wakes.append(retry_at)
        deadline = self.syncer.next_deadline()
        if deadline is not None and deadline != self._fired:
            wakes.append(now + max(0.0, deadline - self.clock()))
        with self._wake:
            if self._changed_at is not None:
                wakes.append(self._changed_at + self.serve.debounce)
            if self._reasons or self.stopping.is_set():
                return
            self._wake.wait(max(0.0, min(wakes) - now))

    def _requested(self) -> bool:
        try:
            return self.stack in self.store.take_sync_requests()
        except DatabaseError as error:
            log.error("cannot read sync requests: %s", error)
            return False

    def _fetch(self) -> bool:
        try:
            return self.source.refresh()
        except GitError as error:
            self.events.emit(
                "source.error",
                f"cannot fetch the source of stack {self.stack}: {error}; the last fetched commit stays",
                severity=Severity.ERROR,
                stack=self.stack,
            )
            return False

    def _sync(self, snapshot: Snapshot, reason: str) -> SyncResult | None:
        log.info("sync of stack %s (%s)", self.stack, reason)
        try:
            result = self.syncer.sync(snapshot, stop=self.stopping, reason=reason)
        except DatabaseError as error:
            log.error("sync of stack %s failed: %s", self.stack, error)
            return SyncResult("error", SyncStatus.UNKNOWN, retry_after=5.0)
        self._watch_targets(snapshot)
        return result

    def _watch_targets(self, snapshot: Snapshot) -> None:
        """Tell monitoring which hosts to probe and which VMs to expect, from the records after the sync."""
        try:
            records = self.store.list_resources()
        except DatabaseError as error:
            log.error("cannot read the records: %s", error)
            return
        by_key = {record.key: record for record in records}
        hosts = known_hosts(snapshot.documents or {}, by_key)
        expected: dict[str, dict[str, ExpectedVM]] = {}
        for record in records:
            if record.kind is not Kind.VIRTUAL_MACHINE or record.stack != self.stack or record.applied is None:
                continue
            uuid = record.live.get("uuid")
            if not uuid or not record.host:
                continue
            state = str(record.applied.get("state", "running"))
            expected.setdefault(record.host, {})[str(uuid)] = ExpectedVM(record.key, record.stack, state)
        self.monitor.update(hosts, expected, by_key)
