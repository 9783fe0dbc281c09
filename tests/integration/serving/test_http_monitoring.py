"""The HTTP server of a real ``nebctl serve`` (health, readiness, Prometheus metrics parsed with
prometheus-client's own parser) and its monitoring: custom probe programs whose keys place VMs, and samples
downsampled on the retention schedule."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from nebctl.database.records import HostSampleRecord
from tests.integration.serving.conftest import cleanup, make_workspace, workspace
from tests.support.drills import Workspace
from tests.support.serving import Served, start_serve, vm_manifest, wait_for, write_manifests

__all__ = ["cleanup", "workspace"]  # fixtures

DOCUMENTED = {
    "nebctl_sync": "counter",  # nebctl_sync_total: the parser names counter families without the suffix
    "nebctl_reconcile_duration_seconds": "histogram",
    "nebctl_action_duration_seconds": "histogram",
    "nebctl_drift_resources": "gauge",
    "nebctl_host_up": "gauge",
    "nebctl_stack_info": "gauge",
}


def _samples(served: Served) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = served.get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in DOCUMENTED.items():
        assert name in families, f"{name} missing from /metrics"
        assert families[name].type == kind
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families.values()
        for sample in family.samples
    }


def test_health_readiness_and_metrics(workspace: Workspace, cleanup: list[Served]) -> None:
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", workspace.stack, "--report-only")
    cleanup.append(served)
    assert served.get("/healthz") == (200, '{"status":"ok"}')
    wait_for(lambda: served.status().get("sync_status") == "synced", what="synced")
    status, body = served.get("/readyz")
    ready = json.loads(body)
    replica = f"{socket.gethostname()}:{served.process.pid}"  # the default name of a replica: HOST:PID
    assert status == 200 and ready == {
        "status": "ready",
        "role": "leader",  # the one replica leads, in the lease's first term
        "replica": replica,
        "term": 1,
        "leader": replica,
        "source": True,
        "database": True,
    }

    samples = _samples(served)
    assert samples[("nebctl_sync_total", frozenset({("stack", "site"), ("result", "succeeded")}))] == 1
    assert samples[("nebctl_leader", frozenset({("replica", replica)}))] == 1
    assert samples[("nebctl_lease_term", frozenset())] == 1
    assert samples[("nebctl_leader_changes_total", frozenset())] == 0
    assert (
        samples[("nebctl_stack_info", frozenset({("stack", "site"), ("sync_status", "synced"), ("revision", "")}))] == 1
    )
    deploys = (
        "nebctl_action_duration_seconds_count",
        frozenset({("family", "virtualization"), ("action", "deploy"), ("result", "succeeded")}),
    )
    assert samples[deploys] == 2  # web-1 and web-2
    assert samples[("nebctl_reconcile_duration_seconds_count", frozenset())] >= 1
    wait_for(lambda: _samples(served).get(("nebctl_host_up", frozenset({("host", "h1")}))) == 1, what="h1 up")

    assert workspace.run("sim", "stop-vm", "web-1").returncode == 0  # reported only: the drift gauge shows it
    served.wait_event("drift.detected")
    wait_for(
        lambda: _samples(served).get(("nebctl_drift_resources", frozenset({("stack", "site"), ("kind", "vm")}))) == 1,
        what="one drifted VM in the metrics",
    )
    samples = _samples(served)
    info = ("nebctl_stack_info", frozenset({("stack", "site"), ("sync_status", "out of sync"), ("revision", "")}))
    assert samples[info] == 1
    assert (
        "nebctl_stack_info",
        frozenset({("stack", "site"), ("sync_status", "synced"), ("revision", "")}),
    ) not in samples
    assert served.terminate() == 0


PROBE = """#!/bin/sh
# A custom probe: the host's name is $1 (and $NEBCTL_HOST); only h2 has GPUs.
if [ "$1" = h2 ]; then echo "gpu=2"; else echo "gpu=0"; fi
echo "# comments and blank lines are skipped"
echo
echo "power=green"
"""


def test_a_custom_probe_key_places_a_vm(tmp_path: Path, cleanup: list[Served]) -> None:
    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "gpus").write_text(PROBE, encoding="utf-8")
    (probes / "gpus").chmod(0o755)
    (probes / "README").write_text("not executable: not a probe\n", encoding="utf-8")
    workspace = make_workspace(tmp_path / "ws")
    workspace.settings_overrides = {**workspace.settings_overrides, "probes_dir": str(probes)}
    workspace.__post_init__()  # rewrite the configuration with the probes directory
    write_manifests(
        workspace.manifests,
        [
            vm_manifest("trainer", extra="  placement: {requirements: \"custom.gpu >= 1 and power == 'green'\"}\n"),
            vm_manifest("plain", extra='  placement: {requirements: "custom.gpu == 0"}\n'),
        ],
    )
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", workspace.stack)
    cleanup.append(served)
    wait_for(lambda: served.status().get("sync_status") == "synced", what="synced")
    with workspace.fleet() as fleet:
        shown = fleet.show()
    where = {vm["name"]: host for host, data in shown["hosts"].items() for vm in data["vms"]}
    assert where == {"trainer": "h2", "plain": "h1"}

    def both_probed() -> dict[str, HostSampleRecord] | None:
        with workspace.store() as store:
            latest = store.latest_host_samples()
        return latest if {"h1", "h2"} <= set(latest) else None

    latest = wait_for(both_probed, what="host samples of h1 and h2")
    assert latest["h2"].attributes["gpu"] == "2" and latest["h1"].attributes["gpu"] == "0"
    assert latest["h1"].attributes["power"] == "green"
    assert served.terminate() == 0


def test_samples_are_downsampled_after_their_retention(tmp_path: Path, cleanup: list[Served]) -> None:
    workspace = make_workspace(tmp_path / "ws", raw_retention="1s", housekeeping_interval="1s", host_interval="0.5s")
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", workspace.stack)
    cleanup.append(served)

    def folded() -> bool:
        with workspace.store() as store:
            samples = store.host_samples(host="h1")
        return any(s.resolution == 300 for s in samples)

    wait_for(folded, timeout=30, what="5-minute means of h1's samples")
    time.sleep(0.5)
    with workspace.store() as store:
        host_samples = store.host_samples(host="h1")
        vm_samples = store.vm_samples(host="h1")
    now = time.time()
    for sample in host_samples + vm_samples:
        if sample.resolution == 0:
            assert now - sample.time.timestamp() < 3, "a raw sample outlived its retention (and a round)"
        else:
            assert sample.resolution == 300 and sample.time.timestamp() % 300 == 0
    assert any(s.resolution == 300 for s in vm_samples)
    assert served.terminate() == 0
