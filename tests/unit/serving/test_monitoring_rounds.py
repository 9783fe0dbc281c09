"""Monitoring rounds: a VM found in another state than the one applied reaches the service, once, even when
nothing of the round can be written (the database busy, the replica fenced off)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nebctl.controller.serving.eventing import EventSink
from nebctl.controller.serving.metrics import ServiceMetrics
from nebctl.controller.serving.monitoring import ExpectedVM, Monitor
from nebctl.core.keys import ResourceKey
from nebctl.core.service import ServeSettings
from nebctl.database.operating import Fence
from nebctl.database.store import Store
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe, HostRef, VMStatus

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
