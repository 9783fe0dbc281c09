"""Benchmark of the dashboard: how long its pages take the server, and how soon an event reaches a browser.

From a real ``nebctl serve`` process on the simulated fleet (SQLite database) whose stack holds 10,000
resources (9,989 VMs, 8 hosts, a datastore, an image and a network):

- server time of the overview (``/``) and the stack page (``/stacks/bench``): the time to the last byte of the
  response over loopback, signed in, measured ``--runs`` times after one warm-up. Target: under 300 ms. The
  stack page's pending plan is a fragment the page loads after it (``/stacks/bench/plan``, a plan of the whole
  stack as ``nebctl diff`` makes it); its time is reported too, with no target.
- event to browser: from an event's insertion into the event log to its row appearing in the events page of
  a headless chromium (the page's server-sent-event stream, then htmx's swap), timed in the browser by a
  MutationObserver against the same wall clock. Target: under 1 s.

Run from the repository root: ``.venv/bin/python bench/dashboard.py [--vms 9989] [--runs 20] [--events 20]``;
``--write`` replaces the dashboard section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import write_section  # noqa: E402
from nebctl.database.records import EventRecord  # noqa: E402
from tests.support.browser import add_user, browser  # noqa: E402
from tests.support.drills import Workspace, fleet_manifests  # noqa: E402
from tests.support.serving import Served, start_serve, wait_for  # noqa: E402

HEADING = "## Dashboard (bench/dashboard.py)"
PASSWORD = "bench password"


def _workspace(root: Path, vms: int) -> Workspace:
    manifests = root / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=vms), encoding="utf-8")
    settings = {"parallelism": 16, "serve": {"interval": "1h", "vm_interval": "1h", "host_interval": "1h"}}
    return Workspace(root / "ws", manifests=manifests, stack="bench", settings_overrides=settings)


def _client(served: Served) -> httpx.Client:
    client = httpx.Client(base_url=served.url(""), timeout=600)
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    signed = client.post("/login", data={"csrf": token.group(1), "username": "bench", "password": PASSWORD})
    assert signed.status_code == 303 and signed.headers["location"] == "/", signed.text
    return client


def _times(client: httpx.Client, path: str, runs: int) -> tuple[list[float], int]:
    first = client.get(path)  # warm-up
    assert first.status_code == 200, (path, first.status_code)
    return _runs(client, path, runs), len(first.content)


def _runs(client: httpx.Client, path: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200
    return times


OBSERVER = """
window.__seen = {};
new MutationObserver(() => {
  for (const row of document.querySelectorAll("tr.event[data-type='bench.ping']")) {
    const id = row.getAttribute("data-id");
    if (!(id in window.__seen)) window.__seen[id] = Date.now();
  }
}).observe(document.getElementById("events"), {childList: true});
"""


def event_latency(served: Served, workspace: Workspace, events: int) -> list[float]:
    delays = []
    with browser(served.url("")) as window:
        window.open("/login")
        window.fill("#username", "bench")
        window.fill("#password", PASSWORD)
        window.click("form.login button[type=submit]")
        window.wait(lambda: window.path == "/" or None, what="signed in")
        window.open("/events")
        time.sleep(1.0)  # the stream connects
        window.driver.execute_script(OBSERVER)
        with workspace.store() as store:
            for index in range(events):
                sent = time.time()
                (event_id,) = store.add_events([EventRecord(type="bench.ping", message=f"ping {index}")])

                def arrived(event_id: int = event_id) -> float | None:
                    value = window.driver.execute_script(f"return window.__seen['{event_id}']")
                    return float(value) if value is not None else None

                seen = window.wait(arrived, timeout=30, what=f"event {event_id} in the browser")
                delays.append(float(seen) / 1000.0 - sent)
                time.sleep(0.3)
    return delays


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"{statistics.median(values) * 1000:.0f} ms (p95 {p95 * 1000:.0f} ms)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=9989, help="VMs (with 11 other resources)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nebctl-bench-dashboard-") as tmp:
        workspace = _workspace(Path(tmp), args.vms)
        workspace.run("status")
        add_user(workspace, "bench", PASSWORD, ["get", "diff"])
        started = time.monotonic()
        served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", "bench")
        try:
            wait_for(lambda: served.status().get("sync_status") == "synced", timeout=3600, what="the first sync")
            print(f"first sync of {args.vms} VMs: {time.monotonic() - started:.0f} s", flush=True)
            with workspace.store() as store:
                resources = len(store.list_resources(stack="bench"))
            client = _client(served)
            try:
                overview, overview_bytes = _times(client, "/", args.runs)
                print(f"overview: {_ms(overview)}, {overview_bytes} bytes", flush=True)
                stack, stack_bytes = _times(client, "/stacks/bench", args.runs)
                print(f"stack page: {_ms(stack)}, {stack_bytes} bytes", flush=True)
                # The service keeps a plan for 10 s: the first call after that makes one (a full plan and a
                # probe of every host, as `nebctl diff`), the next ones within it reuse it.
                time.sleep(11)
                plan_made = _runs(client, "/stacks/bench/plan", 1)
                plan_kept = _runs(client, "/stacks/bench/plan", args.runs)
                print(f"pending plan: made {_ms(plan_made)}, kept {_ms(plan_kept)}", flush=True)
            finally:
                client.close()
            latency = event_latency(served, workspace, args.events)
            print(f"event to browser: {_ms(latency)}", flush=True)
        finally:
            served.terminate()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    section = "\n".join(
        [
            HEADING,
            "",
            f"{datetime.now():%Y-%m-%d}, {machine}, SQLite, a real `nebctl serve` on the sim fleet, stack of "
            f"{resources} resources ({args.vms} VMs). Server time is the time to the last byte over loopback, "
            f"median of {args.runs} runs after a warm-up; the event latency is from the event's insertion to its "
            f"row in chromium's DOM, median of {args.events}.",
            "",
            "| measure | figure | target |",
            "|---|---|---|",
            f"| overview `/` | {_ms(overview)}, {overview_bytes // 1024} KiB | < 300 ms |",
            f"| stack page `/stacks/bench` | {_ms(stack)}, {stack_bytes // 1024} KiB | < 300 ms |",
            f"| its pending plan fragment, made (a full plan, as `nebctl diff`) | {_ms(plan_made)} | - |",
            f"| its pending plan fragment, kept (within 10 s, nothing changed) | {_ms(plan_kept)} | - |",
            f"| event to browser (SSE + htmx) | {_ms(latency)} | < 1 s |",
            "",
        ]
    )
    print(section)
    if args.write:
        write_section(HEADING, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
