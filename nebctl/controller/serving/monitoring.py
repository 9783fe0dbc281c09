"""The service's continuous monitoring: host probes (with the custom probe programs) and VM state probes on
their intervals, one bulk call per host, hosts in parallel (bounded), plus an immediate VM probe of a host when
its driver reports a lifecycle event.

Each round stores samples (through ``sampling.record_observation``, as diff and apply do) and what it observed
(``Store.record_observations``); housekeeping downsamples and prunes the samples on the retention schedule.
A VM whose observed state differs from what was applied, newly, makes the
service sync (the plan decides what to heal). A host that misses ``host_error_after`` probes in a row is in
error: ``host.error`` and ``vm.unknown`` events are recorded, its VMs' health becomes unknown, and nothing is
healed on it (the planner sees its VMs as unknown, never stopped) until it answers again (``host.recovered``).
Used by ``service.Service``; the custom attributes it caches are what the service's plans see.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nebctl.controller.observing import DriverSource, observations
from nebctl.controller.probing import CustomProbes
from nebctl.controller.reaping import ProgramRecorder
from nebctl.controller.sampling import record_observation
from nebctl.controller.serving.eventing import EventSink
from nebctl.controller.serving.metrics import ServiceMetrics
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.service import ServeSettings
from nebctl.database.errors import DatabaseError
from nebctl.database.records import HostSampleRecord, ResourceRecord, Severity
from nebctl.database.store import Store
from nebctl.drivers.context import CallContext, calling
from nebctl.drivers.errors import DriverError
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe, HostRef, VMStatus
from nebctl.reconcilers.base import LiveView

log = logging.getLogger(__name__)

YIELD_AT_MOST = 10.0  # seconds a round waits for the service's planning (``Monitor._yield_to_sync``)
FIVE_MINUTES = timedelta(minutes=5)
ONE_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class ExpectedVM:
    """A VM as last applied: which resource it is and the state it should be in."""

    key: ResourceKey
    stack: str
    state: str  # running, stopped...


@dataclass
class _Round:
    name: str
    ok: bool
    probe: HostProbe | None = None
    custom: Mapping[str, str] | None = None
    statuses: Sequence[VMStatus] | None = None
    error: str | None = None


class Monitor:
    def __init__(
        self,
        *,
        store: Store,
        registry: DriverSource,
        serve: ServeSettings,
        events: EventSink,
        metrics: ServiceMetrics,
        on_drift: Callable[[str], None],
        probes: CustomProbes | None = None,
        clock: Callable[[], float] = time.time,
        planning: Callable[[], bool] = lambda: False,
    ) -> None:
        """``planning`` says whether the service is about to plan or planning a sync: rounds (all but those a
        lifecycle event asked for) wait for it, at most ``YIELD_AT_MOST`` seconds."""
        self.store = store
        self.registry = registry
        self.serve = serve
        self.events = events
        self.metrics = metrics
        self.on_drift = on_drift
        self.probes = probes
        self.clock = clock
        self.planning = planning
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.paused = threading.Event()  # set while this replica does not lead: the leader monitors
        self.paused.set()
        self._thread: threading.Thread | None = None
        self._hosts: dict[str, tuple[HostRef, Any]] = {}
        self._expected: dict[str, dict[str, ExpectedVM]] = {}  # host -> uuid -> VM
        self._custom: dict[str, Mapping[str, str]] = {}
        self._misses: dict[str, int] = {}
        self._in_error: set[str] = set()
        self._mismatches: dict[str, set[tuple[ResourceKey, str]]] = {}
        self._urgent: set[str] = set()
        self._new_hosts: set[str] = set()
        self._records: dict[ResourceKey, ResourceRecord] = {}
        self._last_probe: dict[str, HostProbe] = {}  # each host's last host probe (VM rounds reuse it)
        self._watching: dict[str, Callable[[], None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=serve.monitor_parallelism, thread_name_prefix="monitor")
        self._programs = ProgramRecorder(store)

    # --- what the service tells it and asks of it -----------------------------------------------------------

    def update(
        self,
        hosts: Mapping[str, tuple[HostRef, Any]],
        expected: Mapping[str, Mapping[str, ExpectedVM]],
        records: Mapping[ResourceKey, ResourceRecord] | None = None,
    ) -> None:
        """The hosts to probe, the VMs each should have, and the records of both, whose observed state each
        round keeps for ``get`` and ``describe`` (after every sync)."""
        with self._lock:
            if records is not None:
                self._records = {
                    key: record
                    for key, record in records.items()
                    if key.kind is Kind.HOST or (key.kind is Kind.VIRTUAL_MACHINE and record.host in hosts)
                }
            added = set(hosts) - set(self._hosts)
            self._hosts = dict(hosts)
            self._expected = {host: dict(vms) for host, vms in expected.items()}
            gone = set(self._watching) - set(hosts)
            if added:
                self._new_hosts |= added  # probed at once, not at the next host interval
        if added:
            self._wake.set()
        for name in gone:
            self._watching.pop(name)()
        for name, (ref, overrides) in hosts.items():
            if name not in self._watching:
                self._watch(name, ref, overrides)

    def hosts_in_error(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._in_error)

    def attributes(self, host: HostRef) -> Mapping[str, str]:
        """The host's custom probe attributes as last probed (run now if it was never probed)."""
        with self._lock:
            cached = self._custom.get(host.name)
        if cached is None and self.probes is not None:
            cached = self.probes(host)
            with self._lock:
                self._custom[host.name] = cached
        return cached or {}

    def check(self, host: str) -> None:
        """Probe ``host``'s VMs now (a lifecycle event said something happened there)."""
        with self._lock:
            self._urgent.add(host)
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for stop in self._watching.values():
            stop()
        self._watching.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        now = self.clock()
        next_host = now
        next_vm = now + self.serve.vm_interval
        next_housekeeping = now + min(60.0, self.serve.housekeeping_interval)
        while not self._stopped.is_set():
            if self.paused.is_set():
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            urgent_only = self._yield_to_sync()
            now = self.clock()
            with self._lock:
                urgent, self._urgent = self._urgent, set()
                new, self._new_hosts = (set(), self._new_hosts) if urgent_only else (self._new_hosts, set())
                hosts = dict(self._hosts)
            try:
                if urgent_only:  # the rest waits on
                    self._round({name: hosts[name] for name in urgent if name in hosts}, host_probes=False)
                    continue
                if new and now < next_host:
                    self._round({name: hosts[name] for name in new if name in hosts}, host_probes=True)
                if now >= next_host:
                    self._round(hosts, host_probes=True)
                    next_host = now + self.serve.host_interval
                    next_vm = now + self.serve.vm_interval
                elif now >= next_vm:
                    self._round(hosts, host_probes=False)
                    next_vm = now + self.serve.vm_interval
                elif urgent:
                    self._round({name: hosts[name] for name in urgent if name in hosts}, host_probes=False)
                if now >= next_housekeeping:
                    self._housekeeping()
                    next_housekeeping = now + self.serve.housekeeping_interval
            except DatabaseError as error:
                log.error("monitoring: %s", error)
            except Exception:  # the loop must outlive any one bad round; the next one starts afresh
                log.exception("monitoring round failed")
            wait = min(next_host, next_vm, next_housekeeping) - self.clock()
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()

    def _yield_to_sync(self) -> bool:
        """Wait while the service plans a sync (a change was noticed and its first action has not started), at
        most ``YIELD_AT_MOST`` seconds: the plan probes every host itself, and a round of a large fleet beside it
        (about a second of CPU at 10,000 VMs) would only share the interpreter with the change a user waits for.
        A VM check a lifecycle event asked for does not wait: true when that cut the wait short (only that check
        is made then; the rest waits on)."""
        deadline = time.monotonic() + YIELD_AT_MOST
        while self.planning() and time.monotonic() < deadline:
            with self._lock:
                if self._urgent:
                    return True
            if self._stopped.wait(0.05):
                break
        return False

    def _probe(self, name: str, ref: HostRef, overrides: Any, host_probes: bool) -> _Round:
        # The programs a probe runs (an exec driver's, a custom probe) are recorded while they run, so those a
        # killed service leaves hanging are ended by the next writer (``reaping``).
        with calling(CallContext(programs=self._programs)):
            return self._probe_host(name, ref, overrides, host_probes)

    def _probe_host(self, name: str, ref: HostRef, overrides: Any, host_probes: bool) -> _Round:
        try:
            monitoring = self.registry.for_host(ref, overrides).monitoring
            probe = custom = None
            if host_probes:
                probe = monitoring.probe_host(ref)
                if probe.state is HostLiveState.ERROR:
                    return _Round(name, False, probe=probe, error=probe.error or "the host is in error")
                if self.probes is not None:
                    custom = self.probes(ref)
            statuses = monitoring.probe_vms(ref)
            return _Round(name, True, probe=probe, custom=custom, statuses=statuses)
        except (DriverError, OSError, ValueError) as error:
            return _Round(name, False, error=str(error))

    def _round(self, hosts: Mapping[str, tuple[HostRef, Any]], *, host_probes: bool) -> None:
        if not hosts:
            return
        began = time.monotonic()
        futures = [self._pool.submit(self._probe, n, ref, o, host_probes) for n, (ref, o) in sorted(hosts.items())]
        results = [future.result() for future in futures]
        now = datetime.fromtimestamp(self.clock(), UTC)
        drifted: list[str] = []
        recovered = False
        for result in results:
            if not result.ok:
                self._missed(result)
                continue
            recovered |= self._answered(result.name)
            if result.custom is not None:
                with self._lock:
                    self._custom[result.name] = result.custom
            drifted += self._compare(result.name, result.statuses or ())
        # Told before anything is written: a mismatch is reported once (the next round knows it), so a write
        # that fails (the database busy, this replica fenced) must not swallow it.
        if drifted:
            self.on_drift("; ".join(drifted[:5]) + (f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""))
        elif recovered:
            self.on_drift("a host answers again")
        try:
            self._sample(results, now)
        except DatabaseError as error:
            log.warning("could not record the samples: %s", error)
        self._observed(results)
        log.debug("monitoring round of %d host(s) done in %.3fs", len(hosts), time.monotonic() - began)

    def _sample(self, results: Sequence[_Round], now: datetime) -> None:
        """The round's samples, through the one path every observation takes (``sampling.record_observation``):
        a host sample for each host probed this round (with its custom attributes; in error when it did not
        answer), a VM sample for each VM nebctl owns on an answering host."""
        probes: dict[str, HostProbe] = {}
        vms: dict[str, VMStatus] = {}
        vm_hosts: dict[str, str] = {}
        for result in results:
            if result.probe is not None and result.ok:
                probes[result.name] = dataclasses.replace(
                    result.probe, custom={**result.probe.custom, **(result.custom or {})}
                )
            elif not result.ok:  # a host that did not answer: a sample that says so
                probes[result.name] = result.probe or HostProbe(result.name, HostLiveState.ERROR, error=result.error)
            for status in result.statuses or ():
                vms[status.uuid] = status
                vm_hosts[status.uuid] = result.name
        with self._lock:
            records = dict(self._records)
        record_observation(self.store, LiveView(hosts=probes, vms=vms, vm_hosts=vm_hosts), records, now)

    def _observed(self, results: Sequence[_Round]) -> None:
        """Keep what this round saw of the recorded hosts and VMs (``Store.record_observations``), as
        ``diff`` and ``apply`` do with what they probe: a row per host, and one per VM that differs from its
        record. A VM round reuses each host's last host probe; a host in error is observed as such."""
        probes: dict[str, HostProbe] = {}
        vms: dict[str, VMStatus] = {}
        vm_hosts: dict[str, str] = {}
        with self._lock:
            for result in results:
                if result.probe is not None and result.ok:
                    self._last_probe[result.name] = result.probe
                if result.ok:
                    probe = self._last_probe.get(result.name) or HostProbe(result.name, HostLiveState.ONLINE)
                else:
                    probe = HostProbe(result.name, HostLiveState.ERROR, error=result.error)
                probes[result.name] = probe
                for status in result.statuses or ():
                    vms[status.uuid] = status
                    vm_hosts[status.uuid] = result.name
            records = dict(self._records)
        live = LiveView(hosts=probes, vms=vms, vm_hosts=vm_hosts)
        try:
            self.store.record_observations(observations(records, live), probed=list(probes))
        except DatabaseError as error:
            log.warning("could not record what was observed: %s", error)

    def _missed(self, result: _Round) -> None:
        name = result.name
        with self._lock:
            misses = self._misses[name] = self._misses.get(name, 0) + 1
            newly = misses >= self.serve.host_error_after and name not in self._in_error
            if newly:
                self._in_error.add(name)
                expected = list(self._expected.get(name, {}).values())
        if not newly:
            if misses == 1:
                log.warning("host %s missed its probe: %s", name, result.error)
            return
        self.metrics.host_up.labels(name).set(0)
        self.events.emit(
            "host.error",
            f"host {name} missed {misses} probes in a row: {result.error}; its VMs are unknown and nothing is healed "
            "on it until it answers",
            severity=Severity.ERROR,
            data={"host": name, "misses": misses, "error": result.error},
        )
        for vm in sorted(expected, key=lambda v: str(v.key)):
            self.events.emit(
                "vm.unknown",
                f"{vm.key} is unknown: its host {name} does not answer",
                severity=Severity.WARNING,
                key=vm.key,
                stack=vm.stack,
                data={"host": name},
            )
        self.on_drift(f"host {name} is in error")  # the stack's status shows its VMs unknown

    def _answered(self, name: str) -> bool:
        with self._lock:
            self._misses[name] = 0
            was = name in self._in_error
            self._in_error.discard(name)
        self.metrics.host_up.labels(name).set(1)
        if was:
            self.events.emit("host.recovered", f"host {name} answers its probes again", data={"host": name})
        return was

    def _compare(self, host: str, statuses: Sequence[VMStatus]) -> list[str]:
        """Sample the VMs nebctl manages on ``host`` and return the mismatches with what was applied that
        were not there at the previous probe (a known mismatch is the sync's and the backoff's business)."""
        with self._lock:
            expected = dict(self._expected.get(host, {}))
        seen = {status.uuid: status for status in statuses}
        mismatches: set[tuple[ResourceKey, str]] = set()
        for uuid, vm in expected.items():
            status = seen.get(uuid)
            state = status.state.value if status is not None else "missing"
            if state == VMLiveState.TRANSITIONING:
                continue
            if (vm.state == VMLiveState.RUNNING) != (state == VMLiveState.RUNNING):
                mismatches.add((vm.key, state))
        with self._lock:
            previous = self._mismatches.get(host, set())
            self._mismatches[host] = mismatches
        return [f"{key} is {state} on {host}" for key, state in sorted(mismatches - previous, key=str)]

    @staticmethod
    def _host_sample(probe: HostProbe, custom: Mapping[str, str], now: datetime) -> HostSampleRecord:
        return HostSampleRecord(
            host=probe.name,
            time=now,
            state=probe.state.value,
            cpu_total=probe.cpus,
            cpu_load=probe.load,
            memory_total=probe.memory,
            memory_used=max(0, probe.memory - probe.free_memory),
            disk_total=probe.disk_total,
            disk_used=max(0, probe.disk_total - probe.disk_free),
            attributes={**probe.custom, **custom},
        )

    def _housekeeping(self) -> None:
        """Raw samples become 5-minute means after ``raw_retention``, those hourly means after
        ``five_minute_retention``, and hourly means go after ``hourly_retention``."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        serve = self.serve
        folded = self.store.downsample_samples(before=now - timedelta(seconds=serve.raw_retention), bucket=FIVE_MINUTES)
        folded += self.store.downsample_samples(
            before=now - timedelta(seconds=serve.five_minute_retention), bucket=ONE_HOUR, resolution=300
        )
        pruned = self.store.prune_samples(now - timedelta(seconds=serve.hourly_retention), resolution=3600)
        if folded or pruned:
            log.info("samples: %d downsampled, %d past retention deleted", folded, pruned)

    def _watch(self, name: str, ref: HostRef, overrides: Any) -> None:
        """Subscribe to the driver's lifecycle events of ``name``, where it has them."""
        try:
            monitoring = self.registry.for_host(ref, overrides).monitoring
        except (DriverError, OSError, ValueError):
            return
        watch = getattr(monitoring, "watch", None)
        if not callable(watch):
            return
        try:
            stop = watch(ref, lambda uuid, event: self.check(name))
        except (DriverError, OSError) as error:
            log.warning("host %s: no lifecycle events: %s", name, error)
            return
        if stop is not None:
            self._watching[name] = stop
