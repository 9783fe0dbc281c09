"""Monitoring rounds: a VM found in another state than the one applied reaches the service, once, even when
nothing of the round can be written (the database busy, the replica fenced off); and rounds wait while the
service plans a sync (a bounded wait; a lifecycle event's check does not wait)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nebctl.controller.serving import monitoring
from nebctl.controller.serving.eventing import EventSink
from nebctl.controller.serving.metrics import ServiceMetrics
from nebctl.controller.serving.monitoring import ExpectedVM, Monitor
from nebctl.core.keys import ResourceKey
from nebctl.core.service import ServeSettings
from nebctl.database.operating import Fence
from nebctl.database.store import Store
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe, HostRef, VMStatus
from tests.support.serving import wait_for

WEB = ResourceKey.parse("vm/web")


class _StoppedVM:
    """A host's monitoring driver: it answers, and its one VM is stopped."""

    def probe_host(self, ref: HostRef) -> HostProbe:
        return HostProbe(ref.name, HostLiveState.ONLINE, cpus=4, memory=8 << 30, free_memory=4 << 30)

    def probe_vms(self, ref: HostRef) -> list[VMStatus]:
        return [VMStatus("uuid-web", "web", VMLiveState.STOPPED)]


class _Registry:
    def for_host(self, host: HostRef, overrides: Any = None) -> Any:
        return SimpleNamespace(monitoring=_StoppedVM())

    def get(self, family: Any, reference: str) -> Any:
        raise KeyError(reference)


def test_a_drift_reaches_the_service_when_the_round_cannot_be_written(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}")
    refused = store.fenced(Fence("serve/site", "replica-a", term=None))  # not leading: every write is refused
    drifts: list[str] = []
    told = threading.Event()

    def on_drift(why: str) -> None:
        drifts.append(why)
        told.set()

    monitor = Monitor(
        store=refused,
        registry=_Registry(),
        serve=ServeSettings(vm_interval=0.05, host_interval=0.05),
        events=EventSink(store),
        metrics=ServiceMetrics(),
        on_drift=on_drift,
    )
    monitor.update({"h1": (HostRef("h1", "sim://h1"), None)}, {"h1": {"uuid-web": ExpectedVM(WEB, "site", "running")}})
    monitor.paused.clear()
    monitor.start()
    try:
        assert told.wait(10), "the stopped VM was never reported"
        told.clear()
        assert not told.wait(0.5), drifts  # known from now on: not reported again at every round
    finally:
        monitor.stop()
        store.close()
    assert drifts == ["vm/web is stopped on h1"]


class _Counting(_StoppedVM):
    """The same host, noting when each of its probes (host or VMs) is made."""

    def __init__(self) -> None:
        self.host_probes: list[float] = []
        self.vm_probes: list[float] = []

    def probe_host(self, ref: HostRef) -> HostProbe:
        self.host_probes.append(time.monotonic())
        return super().probe_host(ref)

    def probe_vms(self, ref: HostRef) -> list[VMStatus]:
        self.vm_probes.append(time.monotonic())
        return super().probe_vms(ref)


def _planning_aware_monitor(store: Store, driver: _Counting, planning: threading.Event) -> Monitor:
    """A monitor of ``driver``'s hosts, rounds every 0.1 s, told the service plans while ``planning`` is set."""
    return Monitor(
        store=store,
        registry=SimpleNamespace(for_host=lambda host, overrides=None: SimpleNamespace(monitoring=driver)),
        serve=ServeSettings(vm_interval=0.1, host_interval=0.1),
        events=EventSink(store),
        metrics=ServiceMetrics(),
        on_drift=lambda why: None,
        planning=planning.is_set,
    )


def test_rounds_wait_while_the_service_plans_but_not_a_lifecycle_check_nor_past_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}")
    driver = _Counting()
    planning = threading.Event()
    planning.set()  # a change was noticed: its sync is about to plan
    monitor = _planning_aware_monitor(store, driver, planning)
    monitor.update({"h1": (HostRef("h1", "sim://h1"), None)}, {"h1": {"uuid-web": ExpectedVM(WEB, "site", "running")}})
    monitor.paused.clear()
    monitor.start()
    try:
        time.sleep(1.0)  # ten intervals, and the new host's first round: none while the service plans
        assert driver.host_probes == [] and driver.vm_probes == []

        monitor.check("h1")  # a lifecycle event: that host's VMs are probed at once all the same
        wait_for(lambda: driver.vm_probes, timeout=5, what="the lifecycle check")
        assert driver.host_probes == []

        planning.clear()  # the apply started: rounds resume
        cleared = time.monotonic()
        wait_for(lambda: driver.host_probes, timeout=5, what="a round once the planning is over")
        assert driver.host_probes[0] - cleared < 1.0
    finally:
        monitor.stop()

    # A service that never stops planning does not stop monitoring: a round waits at most the bound.
    monkeypatch.setattr(monitoring, "YIELD_AT_MOST", 0.5)
    driver.host_probes.clear()
    planning.set()
    monitor = _planning_aware_monitor(store, driver, planning)
    monitor.update({"h1": (HostRef("h1", "sim://h1"), None)}, {})
    monitor.paused.clear()
    started = time.monotonic()
    monitor.start()
    try:
        wait_for(lambda: driver.host_probes, timeout=5, what="a round past the bound")
        assert 0.5 <= driver.host_probes[0] - started < 2.5
    finally:
        monitor.stop()
        store.close()
