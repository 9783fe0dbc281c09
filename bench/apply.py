"""Benchmark of ``Controller.apply``: the controller's own cost per action, and how well it fills the parallelism.

Two runs of the same plan (by default 1,000 VMs, each with a cloned disk and a leased NIC, on the sim fleet),
each on a fresh database and fleet file:

- no latency: every driver call returns at once, so the wall time of the apply is the controller's own work
  (scheduling, threads, the journal's transactions, records) plus the sim's SQLite writes; overhead per action
  = wall time / actions. Target: under 0.7 ms.
- fixed latency per action (50 ms): efficiency = ideal / measured, the ideal being the larger of the critical
  path (longest dependency chain x latency) and the total work / parallelism. Target: at least 0.95.

Run from the repository root: ``.venv/bin/python bench/apply.py [--vms N] [--latency S] [--parallelism N]
[--runs N]``; with several runs (each pair on fresh files, alternated), the medians and ranges are reported.
``--write`` replaces the apply section of bench/RESULTS.md with the figures and the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nebctl.core.plans import Plan  # noqa: E402
from nebctl.drivers.sim import Distribution, Latency  # noqa: E402
from tests.support.drills import Workspace, fleet_manifests  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- bench/apply.py: begin -->", "<!-- bench/apply.py: end -->"
OVERHEAD_TARGET_MS = 0.7  # controller time per action with instant drivers
EFFICIENCY_TARGET = 0.95  # ideal / measured wall time at 50 ms per action


@dataclass
class Run:
    actions: int
    plan_seconds: float
    apply_seconds: float
    apply_cpu_seconds: float  # CPU time of this process (all threads, the sim's included) during the apply
    critical_path: int  # actions on the longest dependency chain
    state: str


def critical_path(plan: Plan) -> int:
    graph = plan.graph()
    return len(nx.dag_longest_path(graph)) if graph.number_of_nodes() else 0


def run(root: Path, *, vms: int, hosts: int, latency: float, parallelism: int) -> Run:
    manifests = root / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=vms, hosts=hosts), encoding="utf-8")
    workspace = Workspace(root / "ws", manifests=manifests, stack="bench", settings_overrides={})
    with workspace.store() as store:
        started = time.perf_counter()
        planned = workspace.plan(store)
        plan_seconds = time.perf_counter() - started
        if latency > 0:
            # Set after planning: the figure is about executing actions, not about observing the hosts.
            with workspace.fleet() as fleet:
                fleet.set_latency(Latency("*", Distribution.FIXED, latency))
        controller = workspace.controller(store)
        started, cpu = time.perf_counter(), time.process_time()
        result = controller.apply(planned, parallelism=parallelism)
        apply_seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return Run(
        len(planned.plan.actions), plan_seconds, apply_seconds, cpu_seconds, critical_path(planned.plan), result.state
    )


def _spread(values: list[float], digits: int, unit: str = "") -> str:
    """The median of ``values`` and, over several runs, their range."""
    median = f"{statistics.median(values):.{digits}f}{unit}"
    if len(values) == 1:
        return median
    return f"{median} ({min(values):.{digits}f}-{max(values):.{digits}f}{unit} over {len(values)} runs)"


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per action in the second run")
    parser.add_argument("--parallelism", type=int, default=16)
    parser.add_argument("--runs", type=int, default=1, help="pairs of runs (medians and ranges are reported)")
    parser.add_argument("--write", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()

    bares: list[Run] = []
    slows: list[Run] = []
    for index in range(args.runs):  # alternated, so that a change of the machine's load touches both alike
        with tempfile.TemporaryDirectory(prefix="nebctl-bench-apply-") as tmp:
            bares.append(
                run(Path(tmp) / "bare", vms=args.vms, hosts=args.hosts, latency=0.0, parallelism=args.parallelism)
            )
            slows.append(
                run(
                    Path(tmp) / "slow",
                    vms=args.vms,
                    hosts=args.hosts,
                    latency=args.latency,
                    parallelism=args.parallelism,
                )
            )
        print(f"run {index + 1}: no latency {bares[-1].apply_seconds:.2f} s, slow {slows[-1].apply_seconds:.2f} s")
    for figures in (*bares, *slows):
        if figures.state != "succeeded":
            print(f"the apply did not succeed: {figures.state}", file=sys.stderr)
            return 1

    bare, slow = bares[0], slows[0]
    overheads = [b.apply_seconds / b.actions * 1000 for b in bares]
    cpus = [b.apply_cpu_seconds / b.actions * 1000 for b in bares]
    load = os.getloadavg()[0]
    ideal = max(slow.critical_path * args.latency, slow.actions * args.latency / args.parallelism)
    efficiencies = [ideal / s.apply_seconds for s in slows]
    overhead_ms, efficiency = statistics.median(overheads), statistics.median(efficiencies)
    walls = _spread([b.apply_seconds for b in bares], 2, " s")
    lines = [
        f"- plan: {args.vms} VMs on {args.hosts} sim hosts, {bare.actions} actions, critical path "
        f"{bare.critical_path} actions, parallelism {args.parallelism}",
        f"- no latency: apply {walls}, **{_spread(overheads, 2, ' ms')} of overhead per action** (target < "
        f"{OVERHEAD_TARGET_MS} ms: {_verdict(overhead_ms < OVERHEAD_TARGET_MS)}); CPU time "
        f"{_spread(cpus, 2, ' ms')} per action; planning took {_spread([b.plan_seconds for b in bares], 2, ' s')}",
        f"- {args.latency * 1000:g} ms per action: apply {_spread([s.apply_seconds for s in slows], 2, ' s')}, ideal "
        f"{ideal:.2f} s (max of critical path {slow.critical_path * args.latency:.2f} s and work / parallelism "
        f"{slow.actions * args.latency / args.parallelism:.2f} s), **efficiency {_spread(efficiencies, 3)}** "
        f"(target >= {EFFICIENCY_TARGET}: {_verdict(efficiency >= EFFICIENCY_TARGET)})",
        f"- machine: {os.cpu_count()} CPUs, load average {load:.1f} at the end of the run (other work shares them)",
    ]
    print("\n".join(lines))
    if args.write:
        command = "python bench/apply.py " + shlex.join(sys.argv[1:])
        write_results(lines, command)
    return 0 if overhead_ms < OVERHEAD_TARGET_MS and efficiency >= EFFICIENCY_TARGET else 1


def write_results(lines: list[str], command: str) -> None:
    section = "\n".join(
        [
            BEGIN,
            "## Apply (bench/apply.py)",
            "",
            f"Command: `{command}` ({platform.python_implementation()} {platform.python_version()}, "
            f"{platform.machine()}, SQLite database and fleet file on local disk).",
            "",
            *lines,
            END,
        ]
    )
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
