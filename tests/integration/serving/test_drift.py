"""Drift under a real ``nebctl serve``: a VM stopped behind nebctl's back is started again (self-heal) or only
reported (report-only); a VM that cannot be healed is retried with a growing delay and then marked degraded;
a host that stops answering makes its VMs unknown, and nothing is healed on it."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from nebctl.core.keys import ResourceKey
from tests.integration.serving.conftest import cleanup, make_workspace, vm_states, workspace
from tests.support.drills import Workspace
from tests.support.serving import Served, start_serve, wait_for

__all__ = ["cleanup", "workspace"]  # fixtures


def _start(workspace: Workspace, cleanup: list[Served], *args: str) -> Served:
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", workspace.stack, *args)
    cleanup.append(served)
    served.wait_event("sync.finished")
    wait_for(lambda: served.status().get("sync_status") == "synced", what="the stack to be synced")
    return served


def _health(served: Served) -> dict[str, str]:
    return {r["resource"]: r["health"] for r in served.status()["resources"]}


def test_a_stopped_vm_is_healed(workspace: Workspace, cleanup: list[Served]) -> None:
    served = _start(workspace, cleanup)
    assert workspace.run("sim", "stop-vm", "web-1").returncode == 0
    healed = served.wait_event("drift.healed")[0]
    assert healed.name == "web-1"
    detected = served.events("drift.detected")
    assert [e.name for e in detected] == ["web-1"]
    assert detected[0].data["drift"] == "was stopped"
    assert vm_states(workspace)["web-1"] == "running"
    wait_for(lambda: served.status().get("sync_status") == "synced", what="synced again")
    assert served.terminate() == 0


def test_report_only_reports_and_leaves_the_vm_alone(workspace: Workspace, cleanup: list[Served]) -> None:
    served = _start(workspace, cleanup, "--report-only")
    applies = len(served.events("sync.started"))
    assert workspace.run("sim", "stop-vm", "web-2").returncode == 0
    detected = served.wait_event("drift.detected")[0]
    assert detected.name == "web-2" and detected.data["self_heal"] is False
    wait_for(lambda: served.status().get("sync_status") == "out of sync", what="the stack to be out of sync")
    assert _health(served)["vm/web-2"] == "out of sync"
    assert _health(served)["vm/web-1"] == "healthy"
    time.sleep(2.0)  # four VM probe intervals
    assert vm_states(workspace)["web-2"] == "stopped"
    assert len(served.events("sync.started")) == applies
    assert served.events("drift.healed") == []
    assert len(served.events("drift.detected")) == 1  # reported once, not at every probe
    # Monitoring keeps what it saw for get and describe, as diff and apply do.
    with workspace.store() as store:
        observed = store.get_observation(ResourceKey.parse("vm/web-2"))
    assert observed is not None and observed.state == "stopped" and observed.details["drift"] == ["was stopped"]
    listing = workspace.run("get", "vm")
    assert "stopped (drift" in listing.stdout, listing.stdout
    assert served.terminate() == 0


def test_the_per_stack_setting_chooses_report_only(tmp_path: Path, cleanup: list[Served]) -> None:
    workspace = make_workspace(tmp_path / "ws", stack="quiet", stacks={"quiet": {"self_heal": False}})
    served = _start(workspace, cleanup)
    assert workspace.run("sim", "stop-vm", "web-1").returncode == 0
    served.wait_event("drift.detected")
    wait_for(lambda: served.status().get("sync_status") == "out of sync", what="out of sync")
    assert vm_states(workspace)["web-1"] == "stopped"
    assert served.terminate() == 0


def test_a_vm_that_cannot_be_healed_backs_off_then_is_degraded(tmp_path: Path, cleanup: list[Served]) -> None:
    # Delays 0.5 s, 1.5 s, 4.5 s (x3 each time); degraded after the third failure.
    workspace = make_workspace(
        tmp_path / "ws", backoff_initial="0.5s", backoff_factor=3, backoff_max="4.5s", degraded_after=3
    )
    served = _start(workspace, cleanup)
    fault = workspace.run(
        "sim", "fault", "virtualization.deploy", "permanent", "--host", "h1", "--message", "disk on fire"
    )
    assert fault.returncode == 0, fault.stderr
    assert workspace.run("sim", "stop-vm", "web-1").returncode == 0
    failures = served.wait_event("drift.heal_failed", count=4, timeout=60)
    assert [e.data["failures"] for e in failures[:4]] == [1, 2, 3, 4]
    assert all("disk on fire" in e.data["error"] for e in failures)
    times = [e.time for e in failures[:4]]
    assert all(t is not None for t in times)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]  # type: ignore[operator]
    # Each retry waits at least its delay; and it does not wait much longer (no lost wake-up).
    for gap, delay in zip(gaps, [0.5, 1.5, 4.5], strict=True):
        assert delay <= gap < delay + 2.5, gaps
    degraded = served.events("resource.degraded")
    assert [e.name for e in degraded] == ["web-1"]
    assert degraded[0].time is not None and times[2] is not None and degraded[0].time >= times[2]
    wait_for(lambda: served.status().get("sync_status") == "degraded", what="the stack to be degraded")
    assert _health(served)["vm/web-1"] == "degraded"
    assert vm_states(workspace)["web-1"] == "stopped"

    # Once the fault is gone, the next retry heals it, and the backoff is forgotten.
    assert workspace.run("sim", "clear-faults").returncode == 0
    served.wait_event("drift.healed", timeout=30)
    wait_for(lambda: served.status().get("sync_status") == "synced", what="synced again")
    assert vm_states(workspace)["web-1"] == "running"
    assert served.terminate() == 0


def test_a_host_going_down_makes_its_vms_unknown_and_nothing_is_healed(
    workspace: Workspace, cleanup: list[Served]
) -> None:
    served = _start(workspace, cleanup)
    applies = len(served.events("sync.started"))
    assert workspace.run("sim", "host-down", "h2").returncode == 0
    error = served.wait_event("host.error")[0]
    assert error.data["host"] == "h2" and error.data["misses"] == 2
    unknown = served.wait_event("vm.unknown")
    assert [e.name for e in unknown] == ["web-2"]
    wait_for(lambda: _health(served).get("vm/web-2") == "unknown", what="web-2 to be unknown")
    assert _health(served)["vm/web-1"] == "healthy"
    assert served.status().get("sync_status") == "unknown"
    metrics = served.get("/metrics")[1]
    assert 'nebctl_host_up{host="h2"} 0.0' in metrics and 'nebctl_host_up{host="h1"} 1.0' in metrics
    time.sleep(1.5)
    assert len(served.events("sync.started")) == applies  # no heal, no action
    assert served.events("drift.detected") == []

    assert workspace.run("sim", "host-up", "h2").returncode == 0
    served.wait_event("host.recovered")
    wait_for(lambda: served.status().get("sync_status") == "synced", what="synced again")
    assert vm_states(workspace) == {"web-1": "running", "web-2": "running"}
    assert served.terminate() == 0
