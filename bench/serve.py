"""Benchmark of ``nebctl serve``: how fast a running service reacts, and whether its memory stays put.

Three figures, each from a real ``nebctl serve`` process on the simulated fleet (SQLite database):

- reaction to an edit: from a manifest file's write to the first driver action of the resulting apply
  starting (read from the journal's ``started_at``), on a warm service (its first sync done, and one resync
  since, as after one interval), at 1,000 and 10,000 resources. Targets: under 0.5 s and under 2 s. The debounce
  is set to 0.1 s for this run (the default is 1 s, which alone would be twice the first target; it is the price
  of coalescing an editor's several writes). Argo CD, for comparison, polls every 120 s with up to 60 s of jitter.
- heal time: from a VM stopped behind nebctl's back (``SimFleet.stop_vm``) to it running again, with the
  default VM probe interval (10 s). Target: within one interval plus 1 s. (With libvirt's lifecycle events the
  probe is immediate: tests/libvirt/test_serve_events.py shows it.)
- memory: the service's resident memory after 100 resyncs of 10,000 resources against its memory after the
  first. Target: within 10 %.
- CPU of an edit (``--parts edit-cpu``, not run by default): the CPU time of reading the manifests again and
  planning after a one-file edit, in this process, as the service does both: steadier than the reaction's wall
  time on a machine shared with other work.

Run from the repository root: ``.venv/bin/python bench/serve.py [--sizes 1000,10000] [--resyncs 100]``;
``--write`` replaces the serve section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import write_section  # noqa: E402
from nebctl.controller.applying import Controller, PlanOptions  # noqa: E402
from nebctl.controller.applying.records_cache import RecordsCache  # noqa: E402
from nebctl.controller.serving.sources import load_snapshot  # noqa: E402
from nebctl.drivers.registry import build_registry  # noqa: E402
from tests.support.drills import Workspace, fleet_manifests  # noqa: E402
from tests.support.serving import Served, start_serve, wait_for  # noqa: E402

HEADING = "## Service (bench/serve.py)"


def _workspace(root: Path, vms: int, **serve: object) -> Workspace:
    manifests = root / "manifests"
    manifests.mkdir(parents=True)
    text = fleet_manifests(vms=vms)
    documents = text.split("---\n")
    # The edited VM in a file of its own, as one edits one file of a large set.
    (manifests / "fleet.yaml").write_text("---\n".join(documents[:-1]), encoding="utf-8")
    (manifests / "edited.yaml").write_text(documents[-1], encoding="utf-8")
    settings = {"parallelism": 16, "serve": {"interval": "1h", "request_poll": "0.5s", **serve}}
    return Workspace(root / "ws", manifests=manifests, stack="bench", settings_overrides=settings)


def _synced(served: Served, timeout: float) -> None:
    wait_for(lambda: served.status().get("sync_status") == "synced", timeout=timeout, what="the first sync")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def reaction(root: Path, vms: int, edits: int) -> tuple[int, list[float]]:
    """(resources, seconds from each edit's write to the first action of its apply)."""
    workspace = _workspace(root, vms, debounce="0.1s", vm_interval="1h", host_interval="1h")
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", "bench")
    try:
        _synced(served, timeout=3600)
        # Warm, as a service that has run for one interval: besides the first sync (which created everything), one
        # resync, whose plan the planner keeps to plan the next edit from (``planning.incremental``).
        warmed = workspace.run("sync", "bench", "--wait", "10m", timeout=700)
        assert warmed.returncode == 0, warmed.stderr
        with workspace.store() as store:
            resources = len(store.list_resources(stack="bench"))
        edited = workspace.manifests / "edited.yaml"
        original = edited.read_text(encoding="utf-8")
        delays = []
        for index in range(edits):
            with workspace.store() as store:
                before = store.list_applies(stack="bench", limit=1)[0].id
            text = original.replace("memory: 512Mi", f"memory: {513 + index}Mi")
            written = time.time()
            edited.write_text(text, encoding="utf-8")

            def first_action(before: int = before) -> datetime | None:
                with workspace.store() as store:
                    newest = store.list_applies(stack="bench", limit=1)[0]
                    if newest.id == before:
                        return None
                    starts = [a.started_at for a in store.actions_of(newest.id) if a.started_at is not None]
                return min(starts) if starts else None

            started = wait_for(first_action, timeout=600, what="the edit's first action")
            delays.append(started.timestamp() - written)
            _synced(served, timeout=600)
        return resources, delays
    finally:
        served.terminate(timeout=600)


def edit_cpu(root: Path, vms: int, edits: int) -> list[tuple[float, float]]:
    """(CPU seconds reading the manifests again, CPU seconds planning) of each edit, made in this process the
    way the service makes them: the directory read through the manifest cache remembering its files, the plan
    made by a controller keeping the records between plans, the collector set as the CLI sets it. On a shared
    machine the wall time of ``reaction`` measures the scheduler as much as nebctl; this does not."""
    workspace = _workspace(root, vms)
    applied = workspace.apply(timeout=3600)
    if applied.returncode != 0:
        raise RuntimeError(f"the first apply failed: {applied.stderr[-2000:]}")
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 20, 10)
    edited = workspace.manifests / "edited.yaml"
    original = edited.read_text(encoding="utf-8")
    with workspace.store() as store:
        settings = workspace.settings
        # As the service's controller (each plan made from the last one's trace), without its kept observation:
        # there each edit's apply moves the fleet, so the next plan observes again (these edits are planned only).
        controller = Controller(
            store=store,
            registry=build_registry(settings),
            settings=settings,
            records_cache=RecordsCache(),
            keep_observations=False,
            incremental=True,
        )

        def once() -> tuple[float, float]:
            start = time.process_time()
            snapshot = load_snapshot(workspace.manifests, None, workspace.state_dir / "cache")
            assert snapshot.documents is not None, snapshot.problems
            loaded = time.process_time()
            controller.plan(snapshot.documents, PlanOptions(workspace.stack))
            return loaded - start, time.process_time() - loaded

        once()  # the service's first sync
        times = []
        try:
            for index in range(edits):
                edited.write_text(original.replace("memory: 512Mi", f"memory: {513 + index}Mi"), encoding="utf-8")
                times.append(once())
        finally:
            edited.write_text(original, encoding="utf-8")
    return times


def heal(root: Path, vms: int, samples: int) -> list[float]:
    workspace = _workspace(root, vms)  # the default VM probe interval, 10 s
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", "bench")
    try:
        _synced(served, timeout=3600)
        times = []
        for index in range(samples):
            name = f"vm-{index:04d}"
            with workspace.fleet() as fleet:
                stopped = time.monotonic()
                fleet.stop_vm(name)

            def running(name: str = name) -> bool:
                with workspace.fleet() as fleet:
                    shown = fleet.show()
                return any(
                    vm["name"] == name and vm["state"] == "running"
                    for host in shown["hosts"].values()
                    for vm in host["vms"]
                )

            wait_for(running, timeout=120, what=f"{name} to run again")
            times.append(time.monotonic() - stopped)
        return times
    finally:
        served.terminate(timeout=600)


def memory(root: Path, vms: int, resyncs: int) -> tuple[int, int, int, float]:
    """(resources, RSS KiB after the first resync, after the last, seconds per resync)."""
    workspace = _workspace(root, vms, interval="0.05s", jitter=0, vm_interval="1h", host_interval="1h")
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", "bench")
    try:
        _synced(served, timeout=3600)
        # Warm, as a service that has run for one interval: besides the first sync (which created everything), one
        # resync, whose plan the planner keeps to plan the next edit from (``planning.incremental``).
        warmed = workspace.run("sync", "bench", "--wait", "10m", timeout=700)
        assert warmed.returncode == 0, warmed.stderr
        with workspace.store() as store:
            resources = len(store.list_resources(stack="bench"))

        def resynced() -> int:
            # Counted in the service's log (one line per sync it starts): asking /metrics can time out while a
            # loaded machine gives the process little CPU, and a resync started means the one before it ended.
            return max(0, served.output_all().count("sync of stack bench (resync)") - 1)

        wait_for(lambda: resynced() >= 1, timeout=600, what="the first resync")
        first = _rss_kib(served.process.pid)
        start, count = time.monotonic(), resynced()
        wait_for(lambda: resynced() >= resyncs, timeout=3 * 3600, what=f"{resyncs} resyncs")
        last = _rss_kib(served.process.pid)
        per_resync = (time.monotonic() - start) / max(1, resynced() - count)
        return resources, first, last, per_resync
    finally:
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="VM counts of the reaction runs")
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--heals", type=int, default=5)
    parser.add_argument("--resyncs", type=int, default=100)
    parser.add_argument("--memory-vms", type=int, default=10000)
    parser.add_argument("--parts", default="reaction,heal,memory", help="which measurements to run")
    parser.add_argument("--write", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()

    lines = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="nebctl-bench-serve-") as tmp:
        parts = set(args.parts.split(","))
        for size in (int(s) for s in args.sizes.split(",") if "reaction" in parts):
            resources, delays = reaction(Path(tmp) / f"react-{size}", size, args.edits)
            target = 0.5 if resources <= 2000 else 2.0
            worst = max(delays)
            ok &= worst < target
            lines.append(
                f"- edit -> first action, {resources:,} resources: median {statistics.median(delays):.2f} s, "
                f"worst {worst:.2f} s over {len(delays)} edits (debounce 0.1 s; target < {target:g} s: "
                f"{'met' if worst < target else 'MISSED'})"
            )
            print(lines[-1], flush=True)
        for size in (int(s) for s in args.sizes.split(",") if "edit-cpu" in parts):
            spent = edit_cpu(Path(tmp) / f"cpu-{size}", size, args.edits)
            totals = [load + plan for load, plan in spent]
            lines.append(
                f"- CPU of an edit's path in one process, {size:,} VMs: median {statistics.median(totals):.2f} s"
                f" ({min(totals):.2f}-{max(totals):.2f} s over {len(spent)} edits): reading the manifests again"
                f" {statistics.median(load for load, _ in spent):.2f} s, planning"
                f" {statistics.median(plan for _, plan in spent):.2f} s"
            )
            print(lines[-1], flush=True)
        if "heal" in parts:
            times = heal(Path(tmp) / "heal", 100, args.heals)
            worst = max(times)
            ok &= worst < 11
            lines.append(
                f"- VM stopped -> running again (VM probe every 10 s): median {statistics.median(times):.2f} s, worst "
                f"{worst:.2f} s over {len(times)} stops (target < 11 s: {'met' if worst < 11 else 'MISSED'})"
            )
            print(lines[-1], flush=True)
        if "memory" not in parts:
            return finish(lines, ok, args.write)
        resources, first, last, per_resync = memory(Path(tmp) / "memory", args.memory_vms, args.resyncs)
        growth = (last - first) / first
        ok &= abs(growth) <= 0.10
        lines.append(
            f"- memory, {resources:,} resources: {first / 1024:.0f} MiB after the first resync, {last / 1024:.0f} MiB "
            f"after {args.resyncs} ({growth:+.1%}; target within 10 %: {'met' if abs(growth) <= 0.10 else 'MISSED'}); "
            f"{per_resync:.2f} s per resync"
        )
        print(lines[-1], flush=True)
    return finish(lines, ok, args.write)


def finish(lines: list[str], ok: bool, write: bool) -> int:
    lines.append(f"- machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end of the run")
    if write:
        command = "python bench/serve.py " + shlex.join(sys.argv[1:])
        section = "\n".join(
            [
                HEADING,
                "",
                f"Command: `{command}` ({platform.python_implementation()} {platform.python_version()}, "
                f"{platform.machine()}, a real `nebctl serve` process, SQLite database and sim fleet file on local "
                "disk).",
                "",
                *lines,
            ]
        )
        write_section(HEADING, section)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
