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
import os
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from nebctl.controller.applying import Controller, PlanOptions
from nebctl.controller.applying.records_cache import RecordsCache
from nebctl.controller.kept_observations import ObservationKeeper
from nebctl.controller.observing import DriverSource, known_hosts
from nebctl.controller.planning import PlanError
from nebctl.controller.probing import CustomProbes
from nebctl.controller.revisions import GitError
from nebctl.controller.serving.eventing import EventSink
from nebctl.controller.serving.leading import FOLLOWER, LEADER, Leadership, LeaseTiming
from nebctl.controller.serving.metrics import ServiceMetrics
from nebctl.controller.serving.monitoring import ExpectedVM, Monitor
from nebctl.controller.serving.sources import Snapshot, Source
from nebctl.controller.serving.syncing import StackSyncer, SyncResult
from nebctl.core.keys import Kind
from nebctl.core.plans import Plan
from nebctl.core.settings import Settings
from nebctl.database.errors import DatabaseError
from nebctl.database.leasing import Fenced
from nebctl.database.locking import this_host
from nebctl.database.operating import Fence
from nebctl.database.records import LockRecord, Severity, SyncStatus
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
        self._halt = threading.Event()  # the running apply starts no new action: we stop, or no longer lead
        # Set from a change of the source (or the start of a sync) until the sync's apply starts or it ends:
        # monitoring's rounds wait meanwhile, so that the plan a user waits for has the interpreter.
        self._planning = threading.Event()
        self._acting_term: int | None = None  # the term this replica last acted in
        self.replica = serve.replica or f"{this_host()}:{os.getpid()}"
        self.leadership = Leadership(
            store,
            stack=stack,
            replica=self.replica,
            listen=serve.listen,
            timing=LeaseTiming(serve.lease, serve.lease_renew, serve.lease_retry),
            events=self.events,
            metrics=self.metrics,
            on_change=self._role_changed,
        )
        # Monitoring and the controller write through the lease: refused whenever this replica does not lead.
        acting = store.fenced(self.leadership.fence)
        self.source_error: str | None = None  # why the last fetch of the source failed (None: it did not)
        probes = CustomProbes(settings.probes_dir, timeout=serve.probe_timeout) if settings.probes_dir else None
        self.monitor = Monitor(
            store=acting,
            registry=registry,
            serve=serve,
            events=self.events,
            metrics=self.metrics,
            on_drift=lambda why: self.trigger(f"monitoring: {why}"),
            probes=probes,
            clock=clock,
            planning=self._planning.is_set,
        )
        self.records_cache = RecordsCache()
        self.controller = Controller(
            store=acting,
            registry=registry,
            settings=settings,
            host_attributes=self.monitor.attributes if probes is not None else None,
            # Each sync reads again only the records written since the last (an edit's plan need not decode
            # every spec of a large stack again).
            records_cache=self.records_cache,
            # A sync whose hosts the drivers vouch are as the last sync saw them plans on that observation.
            observations=ObservationKeeper(max_age=settings.observation_max_age),
            # The monitor keeps what it observes every round; a sync writing the same before acting only delayed
            # an edit's first action (a third of a second at 10,000 VMs).
            keep_observations=False,
            # An edit plans again only what it moved, where nothing the installation shares moved with it.
            incremental=True,
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
            on_acting=self._planning.clear,
        )
        # The dashboard's pending plan is made by a controller of its own, in the HTTP thread, as `nebctl diff`
        # would make it; one at a time, and kept until the records or the manifests change.
        self._viewer = Controller(store=store, registry=registry, settings=settings)
        self._plan_lock = threading.Lock()
        self._plan_cache: tuple[object, Plan, float] | None = None

    # --- what the HTTP layer and the signal handlers call -------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether the service can do its job: the database answers, and the leader has loaded the source (a
        follower serves reads only). Says the replica's role, the term and the leader it last saw."""
        term = self.leadership.term
        seen = self.leadership.leader()
        checks: dict[str, Any] = {
            "role": LEADER if term is not None else FOLLOWER,
            "replica": self.replica,
            "term": seen.term if seen is not None else None,
            "leader": seen.holder if seen is not None else None,
        }
        if term is not None:
            checks["source"] = self._snapshot is not None
        try:
            self.store.stack_status(self.stack)
            checks["database"] = True
        except DatabaseError as error:
            checks["database"] = False
            checks["database_error"] = str(error)
        return bool(checks.get("source", True) and checks["database"]), checks

    @property
    def snapshot(self) -> Snapshot | None:
        """The manifests the last sync loaded (None before the first)."""
        return self._snapshot

    def pending_plan(self, max_age: float = 10.0) -> Plan:
        """What a sync would do now, as ``nebctl diff`` shows it: planned from the last loaded manifests against
        the records and a fresh observation. Kept for ``max_age`` seconds while neither changes. Raises
        ``PlanError`` when no plan can be made (the manifests are invalid or not loaded yet)."""
        snapshot = self._snapshot
        if snapshot is None or snapshot.documents is None:
            raise PlanError(list(snapshot.problems) if snapshot else ["the manifests are not loaded yet"])
        with self._plan_lock:
            marker = (id(snapshot), self.store.records_version())
            cached = self._plan_cache
            if cached is not None and cached[0] == marker and time.monotonic() - cached[2] < max_age:
                return cached[1]
            plan = self._viewer.plan(snapshot.documents, PlanOptions(self.stack, prune=self.prune)).plan
            self._plan_cache = (marker, plan, time.monotonic())
            return plan

    def set_self_heal(self, enabled: bool, *, by: str) -> None:
        """Switch between correcting drift and only reporting it, until the service restarts; a sync follows."""
        self.self_heal = enabled
        self.syncer.self_heal = enabled
        mode = "self-heal" if enabled else "report-only"
        self.events.emit(
            "service.mode",
            f"stack {self.stack} is now {mode} (set by {by})",
            stack=self.stack,
            data={"self_heal": enabled, "by": by},
        )
        self.trigger(f"mode: {mode}")

    def trigger(self, reason: str) -> None:
        with self._wake:
            self._reasons.add(reason)
            self._wake.notify_all()

    def stop(self) -> None:
        """Stop starting actions; ``run`` returns once the running ones are done (and the lease is released)."""
        self.stopping.set()
        self._halt.set()
        with self._wake:
            self._wake.notify_all()

    def _role_changed(self) -> None:
        """The elector's news: a replica that no longer leads starts no new action, at once."""
        if self.leadership.fence.term is None:
            self._halt.set()
        with self._wake:
            self._reasons.add("role")
            self._wake.notify_all()

    def _source_changed(self) -> None:
        log.debug("the source of stack %s changed", self.stack)
        with self._wake:
            self._planning.set()
            self._changed_at = time.monotonic()
            self._wake.notify_all()

    # --- the loop -------------------------------------------------------------------------------------------------

    def _interval(self) -> float:
        return self.serve.interval * (1 + random.uniform(0, self.serve.jitter))

    def run(self) -> None:  # noqa: PLR0912, PLR0915 - the service's one loop: start, elect, watch, resync, heal, stop
        self.leadership.start()  # ReplicaRefused: a second replica on SQLite (unless the caller started it)
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
                term = self.leadership.term
                if term is None:
                    if self._acting_term is not None:
                        self._follow()
                    with self._wake:
                        self._reasons.clear()
                        if not self.stopping.is_set():
                            self._wake.wait(self.serve.lease_retry)
                    continue
                if term != self._acting_term:
                    # Elected: resume what a former leader left unfinished and converge, from a fresh source.
                    self._lead(term)
                    reasons, reload, fetch = {"elected"}, True, True
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
                # Not a moment early: the sync asks the backoff whether the heal may start, with its own clock
                # reading, and a deadline fired before it is due would be spent on a sync that heals nothing.
                if deadline is not None and deadline != self._fired and self.clock() >= deadline:
                    reasons.add("backoff")
                    self._fired = deadline  # each deadline once: a failed heal sets the next one
                if retry_at is not None and now >= retry_at:
                    reasons.add("retry")
                    retry_at = None
                if reasons:
                    began = time.monotonic()
                    if fetch:
                        reload |= self._fetch()
                    if reload or self._snapshot is None:
                        self._snapshot = self.source.load()
                        log.debug("manifests of stack %s read in %.3fs", self.stack, time.monotonic() - began)
                    reload = fetch = False
                    result = self._sync(self._snapshot, ", ".join(sorted(reasons - {"role"})) or "elected", term)
                    reasons = set()
                    if result is not None and result.retry_after is not None:
                        retry_at = time.monotonic() + result.retry_after
                    continue
                self._sleep(next_resync, next_poll, retry_at)
        finally:
            stop_watching()
            self.leadership.stop()  # after the running actions, before the rest: the next leader takes over
            self.monitor.stop()
            self.events.emit("service.stopped", f"nebctl serve of stack {self.stack} stopped", stack=self.stack)

    def _lead(self, term: int) -> None:
        self._acting_term = term
        if not self.stopping.is_set():
            self._halt.clear()
        self.monitor.paused.clear()

    def _follow(self) -> None:
        """No longer the leader: stop monitoring (the next leader does), keep serving reads."""
        self._acting_term = None
        self.monitor.paused.set()
        self.monitor.update({}, {}, {})
        self._snapshot = None

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

    def _requested(self) -> bool:  # only a leader takes the requests
        try:
            return self.stack in self.store.take_sync_requests()
        except DatabaseError as error:
            log.error("cannot read sync requests: %s", error)
            return False

    def _fetch(self) -> bool:
        try:
            changed = self.source.refresh()
        except GitError as error:
            self.source_error = str(error)
            self.events.emit(
                "source.error",
                f"cannot fetch the source of stack {self.stack}: {error}; the last fetched commit stays",
                severity=Severity.ERROR,
                stack=self.stack,
            )
            return False
        self.source_error = None
        return changed

    def _sync(self, snapshot: Snapshot, reason: str, term: int) -> SyncResult | None:
        log.info("sync of stack %s (%s) in term %d", self.stack, reason, term)
        # Everything this sync writes is fenced by the term it started in, even if this replica leads again
        # later in another term: an apply of a former term never writes over what another leader did since.
        self.controller.store = self.store.fenced(Fence(self.leadership.lease, self.replica, term))
        self.syncer.lock_holder = f"nebctl serve (stack {self.stack}, replica {self.replica}, term {term})"
        self.syncer.superseded = lambda holder: superseded(holder, self.stack, term)
        self._planning.set()
        try:
            result = self.syncer.sync(snapshot, stop=self._halt, reason=reason)
        except Fenced as error:
            log.warning("sync of stack %s stopped: %s", self.stack, error)
            self.leadership.lost(term, "a write was refused by fencing")
            return SyncResult("fenced", SyncStatus.UNKNOWN)
        except DatabaseError as error:
            log.error("sync of stack %s failed: %s", self.stack, error)
            return SyncResult("error", SyncStatus.UNKNOWN, retry_after=5.0)
        finally:
            with self._wake:
                if self._changed_at is None:  # else a change noticed meanwhile waits for its own sync
                    self._planning.clear()
        began = time.monotonic()
        self._watch_targets(snapshot)
        log.debug("monitoring told the sync's hosts and VMs in %.3fs", time.monotonic() - began)
        if result.cold:
            with self._wake:
                idle = self._changed_at is None and not self._reasons
            if idle:  # a change noticed meanwhile is planned by its own sync, which warms the planner as well
                self.syncer.warm(snapshot)
        return result

    def _watch_targets(self, snapshot: Snapshot) -> None:
        """Tell monitoring which hosts to probe and which VMs to expect, from the records after the sync."""
        try:
            # Read through the controller's records cache: the same records as ``list_resources`` gives, but
            # only the rows the sync wrote are decoded (at 10,000 VMs, a tenth of the CPU of decoding them all).
            # This runs while a change made meanwhile waits, and the next plan then finds those rows decoded.
            records = self.records_cache.records(self.store)
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


_SERVE_HOLDER = re.compile(r"nebctl serve \(stack (?P<stack>.+), replica (?P<replica>.+), term (?P<term>\d+)\)")


def superseded(holder: LockRecord, stack: str, term: int) -> bool:
    """Whether the writers' lock is held by a replica of ``stack`` that led in a term before ``term``: its writes
    are refused by fencing, so the lock it still holds (paused, or not yet aware) protects nothing."""
    match = _SERVE_HOLDER.fullmatch(holder.holder)
    return match is not None and match["stack"] == stack and int(match["term"]) < term
