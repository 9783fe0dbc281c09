"""``nebctl serve`` on real QEMU domains (qemu:///system of tests/support/libvirtd.py): a domain destroyed behind
nebctl's back with ``virsh destroy`` is started again by the service through libvirt's lifecycle events, long
before the next VM probe (set to 10 minutes here, so that only the events can explain the heal).

The scenario's manifests, names and cleanup are those of test_end_to_end.py (its ``run`` fixture).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.libvirt.test_end_to_end import run  # the fixture
from tests.support.libvirt_scenario import NEBCTL, Run
from tests.support.serving import free_port, wait_for

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(900)]

__all__ = ["run"]  # the fixture

VM_INTERVAL = 600.0


def _status(scenario: Run) -> dict[str, object]:
    result = scenario.nebctl("status", scenario.prefix, "-o", "json")
    if result.returncode != 0:
        return {}
    document: list[dict[str, object]] = json.loads(result.stdout)
    return document[0]


def test_a_destroyed_domain_is_healed_through_lifecycle_events(run: Run) -> None:
    config = run.root / "config.yaml"
    config.write_text(
        config.read_text()
        + f"serve: {{vm_interval: {VM_INTERVAL:g}s, host_interval: {VM_INTERVAL:g}s, debounce: 0.2s, interval: 1h}}\n"
    )
    port = free_port()
    log = (run.root / "serve.log").open("w")
    database = f"sqlite:///{run.root / 'state.db'}"
    process = subprocess.Popen(
        [
            str(NEBCTL),
            "--db",
            database,
            "--config",
            str(config),
            "--log-format",
            "json",
            "serve",
            *run.manifest_args(),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=run.root,
    )
    try:
        wait_for(lambda: _status(run).get("sync_status") == "synced", timeout=300, what="the first sync")
        vm1 = run.vms()[0]["metadata"]["name"]
        assert run.domain(vm1).isActive()

        subprocess.run(["virsh", "-c", "qemu:///system", "destroy", vm1], check=True, capture_output=True)
        destroyed = time.monotonic()
        assert not run.domain(vm1).isActive()
        wait_for(lambda: run.domain(vm1).isActive(), timeout=120, what=f"{vm1} to run again")
        healed_in = time.monotonic() - destroyed
        assert healed_in < VM_INTERVAL / 4, healed_in  # the events, not the probe interval, brought it back
        wait_for(lambda: "drift.healed" in (run.root / "serve.log").read_text(), timeout=120, what="drift.healed")
        output = (run.root / "serve.log").read_text()
        # The heal's sync was started by monitoring (the probe the lifecycle event asked for).
        assert f"monitoring: vm/{vm1} is stopped" in output
        wait_for(lambda: _status(run).get("sync_status") == "synced", timeout=120, what="synced again")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
        log.close()
    assert code == 0
    # Leave nothing behind: the fixture's finalizer removes what carries the prefix; destroy says it cleanly.
    result = run.nebctl("destroy", "--stack", run.prefix, "--yes")
    assert result.returncode == 0, result.stderr
