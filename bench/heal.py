"""Benchmark: how long ``nebctl serve`` takes to start again a QEMU domain destroyed behind its back, on real
libvirt (qemu:///system), through libvirt's lifecycle events.

Run ``.venv/bin/python bench/heal.py [--rounds 5] [--no-write]`` as root (the libvirtd of the test harness,
tests/support/libvirtd.py, is started when none answers). The scenario is the libvirt examples
(manifests/examples-libvirt: a datastore, an image, a network, a security group and two VMs of real QEMU
guests) with a per-run name prefix, as tests/libvirt/test_end_to_end.py writes them. The service runs with its
VM and host probes every 10 minutes, so only the lifecycle events can explain a heal within seconds.

Each round destroys the first VM's domain (``virDomainDestroy`` on a connection of this script), then polls
the domain's state every 5 ms until it is running again: the figure is the user's, from the destroy's return to the
domain running, through the event, the service's probe of that VM, the plan and the start. The service is
waited for to say "synced" between rounds. Target: under 1 s. Everything carrying the prefix is removed at the
end, even on failure; the section "Service on libvirt: heal through lifecycle events" of bench/RESULTS.md is
rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import libvirt  # noqa: E402

from bench.results import write_section  # noqa: E402
from tests.support.libvirt_scenario import NEBCTL, Run, load_examples, remove_prefixed, rewrite_examples  # noqa: E402
from tests.support.libvirtd import exclusive_objects, start_daemon  # noqa: E402
from tests.support.serving import free_port, wait_for  # noqa: E402

SECTION = "## Service on libvirt: heal through lifecycle events (bench/heal.py)"
PROBE_INTERVAL = "600s"  # long enough that only the events can bring a VM back within the round


def sync_status(scenario: Run) -> str:
    result = scenario.nebctl("status", scenario.prefix, "-o", "json")
    if result.returncode != 0:
        return ""
    return str(json.loads(result.stdout)[0].get("sync_status", ""))


def until_running(domain: Any, since: float) -> float:
    """Seconds from ``since`` until the domain is in the running state (QEMU started and its CPUs resumed: a
    domain still starting is active but paused), polled every 5 ms."""
    deadline = since + 120
    while domain.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
        if time.monotonic() > deadline:
            raise SystemExit(f"{domain.name()} was not running again within 120 s")
        time.sleep(0.005)
    return time.monotonic() - since


def heal_once(scenario: Run, name: str) -> float:
    domain = scenario.connection.lookupByName(name)
    domain.destroy()
    destroyed = time.monotonic()
    # The wall-clock moment too, to read beside the service's log (--keep-log): its lines carry UTC times.
    print(f"  destroyed {name} at {datetime.now(UTC).isoformat(timespec='milliseconds')}", flush=True)
    return until_running(domain, destroyed)


def start_directly(scenario: Run, name: str, rounds: int) -> list[float]:
    """The floor: the same domain destroyed and at once started again by this script (``virDomainCreate`` on a
    connection of its own, in a thread, while the same poll as the service's rounds waits for it to run): what
    QEMU and libvirtd take with no controller in between."""
    domain = scenario.connection.lookupByName(name)
    figures = []
    for _ in range(rounds):
        domain.destroy()
        destroyed = time.monotonic()
        starter = threading.Thread(target=_create, args=(name,))
        starter.start()
        figures.append(until_running(domain, destroyed))
        starter.join()
        time.sleep(1.0)
    return figures


def _create(name: str) -> None:
    connection = libvirt.open("qemu:///system")
    try:
        connection.lookupByName(name).create()
    finally:
        connection.close()


def measure(scenario: Run, rounds: int) -> tuple[list[float], list[float]]:
    config = scenario.root / "config.yaml"
    config.write_text(
        config.read_text()
        + f"serve: {{vm_interval: {PROBE_INTERVAL}, host_interval: {PROBE_INTERVAL}, debounce: 0.2s, interval: 1h}}\n"
    )
    log = (scenario.root / "serve.log").open("w")
    process = subprocess.Popen(
        [str(NEBCTL), "--db", f"sqlite:///{scenario.root / 'state.db'}", "--config", str(config),
         "--log-format", "json", "-vv", "serve",
         *scenario.manifest_args(), "--listen", f"127.0.0.1:{free_port()}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=scenario.root,
    )  # fmt: skip
    try:
        wait_for(lambda: sync_status(scenario) == "synced", timeout=300, what="the first sync")
        name = scenario.vms()[0]["metadata"]["name"]
        figures = []
        for round_number in range(1, rounds + 1):
            figures.append(heal_once(scenario, name))
            print(f"  round {round_number}: running again {figures[-1]:.3f} s after the destroy", flush=True)
            wait_for(lambda: sync_status(scenario) == "synced", timeout=120, what="synced again")
            time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        return figures, start_directly(scenario, name, rounds)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        log.close()
        scenario.nebctl("destroy", "--stack", scenario.prefix, "--yes")


def write_results(command: str, figures: list[float], floor: list[float], load: tuple[float, float]) -> None:
    median, worst = statistics.median(figures), max(figures)
    verdict = "met" if median < 1.0 else "MISSED"
    lines = [
        SECTION,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} at the start and {load[1]:.1f} at the end; {time.strftime('%Y-%m-%d')}.",
        "",
        "A QEMU domain of the libvirt examples destroyed behind the service's back (VM and host probes every 10 "
        "minutes, so only libvirt's lifecycle events can bring it back), timed from the destroy's return to the "
        "domain running again (polled every 5 ms):",
        "",
        "| | rounds | median | best | worst |",
        "|---|---|---|---|---|",
        f"| destroyed -> running again, by `nebctl serve` | {len(figures)} | {median:.3f} s | {min(figures):.3f} s "
        f"| {worst:.3f} s |",
        f"| floor: `virDomainCreate` of the same domain by the benchmark itself | {len(floor)} "
        f"| {statistics.median(floor):.3f} s | {min(floor):.3f} s | {max(floor):.3f} s |",
        "",
        f"Target: under 1 s ({verdict}"
        + ("; the floor alone is over it on this machine" if statistics.median(floor) >= 1.0 else "")
        + f"). What the service adds to QEMU's and libvirtd's own start, in medians: "
        f"{median - statistics.median(floor):.3f} s (the event, the probe of that VM, the plan, the journal). "
        "Rounds of the service: " + ", ".join(f"{figure:.3f} s" for figure in figures) + ".",
        "",
    ]
    write_section(SECTION, "\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--keep-log", type=Path, help="copy the service's log (JSON lines) to this file")
    arguments = parser.parse_args()
    start_load = os.getloadavg()[0]
    daemon = start_daemon()
    root = Path(tempfile.mkdtemp(prefix="nebctl-bench-heal-"))
    prefix = f"heal{os.getpid() % 1000}{uuid.uuid4().hex[:4]}"
    manifests = root / "manifests"
    manifests.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(root / "base.qcow2"), "64M"], check=True)
    (root / "config.yaml").write_text("shutdown_timeout: 1s\nparallelism: 8\n")
    connection = libvirt.open(daemon.uri)
    documents = rewrite_examples(load_examples(), prefix, root, random.randint(1, 254))
    scenario = Run(root, manifests, prefix, documents, connection)
    scenario.write()
    try:
        with exclusive_objects():
            figures, floor = measure(scenario, arguments.rounds)
    finally:
        remove_prefixed(connection, prefix)
        connection.close()
        if arguments.keep_log:
            shutil.copy(root / "serve.log", arguments.keep_log)
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"median {statistics.median(figures):.3f} s, worst {max(figures):.3f} s over {len(figures)} rounds; "
        f"floor (virDomainCreate alone) median {statistics.median(floor):.3f} s"
    )
    if not arguments.no_write:
        command = "python bench/heal.py" + (f" --rounds {arguments.rounds}" if arguments.rounds != 5 else "")
        write_results(command, figures, floor, (start_load, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
