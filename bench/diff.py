"""Benchmark of ``nebctl diff`` and ``nebctl apply`` as a user runs them: whole commands, fresh processes.

For each size (1,000, 10,000 and 100,000 VMs over 1,000 sim hosts, the fleet of bench/plan.py written as YAML,
100 VMs per file), on a fresh SQLite database and sim fleet: ``nebctl apply --yes`` creates everything, then
these runs alternate, each in a fresh process (``--runs`` rounds):

- ``floor``: a script that only parses the same YAML with PyYAML's CSafeLoader and reads and json-decodes every
  JSON column of every row of the resources table: what any tool that re-reads everything pays;
- ``diff one file``: ``nebctl diff`` after one file's VM changed (a new label each round, so the file and the set
  are new to the cache every time; exit 2), seconds after the last plan: it plans on that plan's observation,
  which the sim vouches is still the fleet's state (``controller.kept_observations``), and from that plan's trace,
  planning again only the edited file's resources (``controller.kept_traces``);
- ``diff one file, a minute later``: the same, but with the kept observation older than its hosts' usage figures
  may serve (run with ``observation_max_age: 0``, as if the user came back after the minute they are kept for):
  each host's own probe is made again, not its VMs', which the sim still vouches for; the usage figures moved,
  which the VMs that stay where they are do not read, so none is placed again. The plan is still made from the
  trace, which then takes that view: the ``diff one file`` after it (another label) plans on the new observation
  and compares nothing of it;
- ``apply one file``: ``nebctl apply --yes`` of that edit (one VM's label), planned from the same trace;
- ``diff after that apply``: ``nebctl diff`` again: the apply rewrote a record, and moved the trace's state on
  past it (nobody else wrote), so the plan reads the rows of the records it plans again (that one and the edited
  file's) instead of every row; the apply moved one host, which alone is probed again, and compared;
- ``diff one file, after an apply``: the file edited again (another label) and diffed: the steady state of editing
  after an apply. The trace took the last diff's view, which is observed no more; the file is then written back
  as it was, and applied (not timed);
- ``diff no-op, planned``: ``nebctl diff`` on the unchanged set (exit 0), with the kept plans, observations and
  traces deleted first: the whole plan, probes included, as the first no-op after a change elsewhere makes it (it
  keeps its plan, observation and trace again);
- ``diff no-op, kept``: ``nebctl diff`` again: every input is as it was, so the kept plan is shown again;
- ``apply no-op, kept``: ``nebctl apply --yes`` on the unchanged set (nothing to do, the kept plan).

Reported: the median wall time of each (and its range), its ratio to the floor's median, the median CPU time
(user + system: on this shared machine, where other work makes wall times vary by 2 to 4x, the steadier figure)
and its ratio to the floor's, and the peak resident set (the child's ``ru_maxrss``). Targets: a no-op under 1 s
at 10,000 VMs and under 10 s at 100,000, below 1 GiB of peak memory; one file changed about as fast as the
no-op.

Run from the repository root: ``.venv/bin/python bench/diff.py [--sizes 1000 10000] [--runs 5]``; the table
goes to bench/RESULTS.md. The 100,000 case's first apply takes several minutes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # type: ignore[import-untyped]  # noqa: E402

from bench.plan import manifests  # noqa: E402
from bench.results import write_section  # noqa: E402

NEBCTL = ROOT / ".venv" / "bin" / "nebctl"
PER_FILE = 100
MiB = 1024**2

FLOOR = """\
import json, sqlite3, sys
from pathlib import Path
import yaml
documents = 0
for path in sorted(Path(sys.argv[1]).glob("*.yaml")):
    documents += len(list(yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader)))
rows = 0
connection = sqlite3.connect(sys.argv[2])
for row in connection.execute("SELECT desired, applied, live FROM resources"):
    for value in row:
        if value is not None:
            json.loads(value)
    rows += 1
print(documents, rows)
"""


def write_manifests(vms: int, directory: Path) -> list[Path]:
    """The fleet as YAML files: the hosts and shared resources in one, then 100 VMs per file."""
    directory.mkdir(parents=True)
    docs = manifests(vms)
    shared = [doc for doc in docs if doc["kind"] != "VirtualMachine"]
    machines = [doc for doc in docs if doc["kind"] == "VirtualMachine"]
    (directory / "infra.yaml").write_text(yaml.safe_dump_all(shared, sort_keys=False))
    files = []
    for start in range(0, len(machines), PER_FILE):
        path = directory / f"vms-{start // PER_FILE:05d}.yaml"
        path.write_text(yaml.safe_dump_all(machines[start : start + PER_FILE], sort_keys=False))
        files.append(path)
    return files


# What ``-v`` logs when a kept plan is shown again (``controller.kept_plans``), when a plan reuses the last
# observation (``controller.kept_observations``), and when it is made from the last whole plan's trace
# (``controller.kept_traces``).
KEPT = b"it is shown again"
REUSED = b"that observation is reused"
AGED = b"the hosts' own probes made again"
TRACED = b"made from the last one's trace"


def timed(
    command: list[str],
    env: dict[str, str],
    ok: tuple[int, ...] = (0,),
    kept: bool | None = None,
    reused: bool | None = None,
    traced: bool | None = None,
    aged: bool | None = None,
) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (bytes) and CPU seconds (user + system) of a command run in a fresh process. With
    ``kept`` (``reused``, ``traced``), the command (run with ``-v``) must have shown a kept plan again (planned on
    the last observation, from the last trace), or must not have; with ``aged``, it must have probed the hosts of
    an observation too old to take as it is alone, or must not have."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read()  # type: ignore[union-attr]
    process.stderr.close()  # type: ignore[union-attr]
    if code not in ok:
        raise RuntimeError(f"{' '.join(command)} exited {code}: {errors.decode()[-2000:]}")
    if kept is not None and (KEPT in errors) != kept:
        raise RuntimeError(
            f"{' '.join(command)}: expected {'a' if kept else 'no'} kept plan: {errors.decode()[-2000:]}"
        )
    if reused is not None and (REUSED in errors) != reused:
        raise RuntimeError(f"{' '.join(command)}: expected {'a' if reused else 'no'} reused observation: {errors!r}")
    if aged is not None and (AGED in errors) != aged:
        raise RuntimeError(f"{' '.join(command)}: expected the hosts {'' if aged else 'not '}probed alone: {errors!r}")
    if traced is not None and (TRACED in errors) != traced:
        raise RuntimeError(f"{' '.join(command)}: expected {'a' if traced else 'no'} plan from a trace: {errors!r}")
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def run_size(vms: int, runs: int, work: Path) -> dict[str, list[tuple[float, int, float]]]:
    directory = work / f"m{vms}"
    files = write_manifests(vms, directory)
    state = work / f"s{vms}"
    state.mkdir()
    config = state / "config.yaml"
    config.write_text(f"state_dir: {state}\n")
    later = state / "later.yaml"  # any kept observation is older than its hosts' figures may serve as they are
    later.write_text(f"state_dir: {state}\nobservation_max_age: 0\n")
    database = state / "nebctl.db"
    # Compiled bytecode, as an installed nebctl has it: with PYTHONDONTWRITEBYTECODE set (some shells and CI
    # images set it), every fresh process compiled nebctl's modules again, about 0.3 s of CPU a command.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["NEBCTL_DB"] = f"sqlite:///{database}"
    base = [str(NEBCTL), "--config", str(config)]
    wall, peak, _ = timed([*base, "apply", "-f", str(directory), "--stack", "bench", "--yes"], env)
    print(f"  {vms:,} VMs: first apply {wall:.1f} s, peak {peak / MiB:,.0f} MiB", flush=True)
    diff = [*base, "-v", "diff", "-f", str(directory), "--stack", "bench"]
    diff_later = [str(NEBCTL), "--config", str(later), *diff[3:]]
    apply = [*base, "-v", "apply", "-f", str(directory), "--stack", "bench", "--yes"]
    floor = [sys.executable, "-c", FLOOR, str(directory), str(database)]
    kept = [state / "cache" / name for name in ("plans", "observations", "traces")]
    timed(diff, env)  # the apply moved the fleet: this first diff observes, and keeps its plan and observation
    edited = files[len(files) // 2]
    original = edited.read_text()
    figures: dict[str, list[tuple[float, int, float]]] = {}
    for round_ in range(runs):
        figures.setdefault("floor", []).append(timed(floor, env))
        edited.write_text(original.replace("labels: {}", f"labels: {{edit: r{round_}-later}}", 1))
        figures.setdefault("diff one file, a minute later", []).append(
            timed(diff_later, env, ok=(2,), kept=False, reused=False, traced=True, aged=True)
        )
        edited.write_text(original.replace("labels: {}", f"labels: {{edit: r{round_}}}", 1))
        figures.setdefault("diff one file", []).append(timed(diff, env, ok=(2,), kept=False, reused=True, traced=True))
        # The edit applied, then diffed again: the records the apply wrote are planned again from the same trace.
        figures.setdefault("apply one file", []).append(timed(apply, env, kept=False, traced=True))
        figures.setdefault("diff after that apply", []).append(timed(diff, env, kept=False, traced=True))
        # Editing on after an apply, as users do: the trace's records moved, its view is the last diff's.
        edited.write_text(original.replace("labels: {}", f"labels: {{edit: r{round_}-next}}", 1))
        figures.setdefault("diff one file, after an apply", []).append(
            timed(diff, env, ok=(2,), kept=False, reused=True, traced=True)
        )
        edited.write_text(original)
        timed(apply, env)  # the records as they were, for the no-op runs
        for directory in kept:
            shutil.rmtree(directory, ignore_errors=True)
        figures.setdefault("diff no-op, planned", []).append(timed(diff, env, kept=False, reused=False, traced=False))
        figures.setdefault("diff no-op, kept", []).append(timed(diff, env, kept=True))
        figures.setdefault("apply no-op, kept", []).append(timed(apply, env, kept=True))
        print(f"    round {round_ + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f} s" for k, v in figures.items()), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    rows = [
        "| VMs | resources | run | median | range | ratio to floor | CPU (median) | CPU ratio | peak RSS |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="nebctl-bench-diff-") as temporary:
        for vms in args.sizes:
            figures = run_size(vms, args.runs, Path(temporary))
            floor = statistics.median(wall for wall, _, _ in figures["floor"])
            floor_cpu = statistics.median(cpu for _, _, cpu in figures["floor"])
            for name, values in figures.items():
                walls = [wall for wall, _, _ in values]
                median = statistics.median(walls)
                cpu = statistics.median(cpu for _, _, cpu in values)
                rows.append(
                    f"| {vms:,} | {vms + 1008:,} | {name} | {median:.2f} s | {min(walls):.2f}-{max(walls):.2f} s"
                    f" | {median / floor:.2f} | {cpu:.2f} s | {cpu / floor_cpu:.2f}"
                    f" | {max(peak for _, peak, _ in values) / MiB:,.0f} MiB |"
                )
            print("\n".join(rows), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    heading = (
        f"Last run: `python bench/diff.py {' '.join(sys.argv[1:])}` on {datetime.date.today()}, at"
        f" {commit.stdout.strip() or 'an unknown commit'}, {os.cpu_count()} CPUs, load average"
        f" {os.getloadavg()[0]:.1f} at the end; medians of {args.runs} alternating rounds."
    )
    if not args.no_write:
        write_section(
            "## Whole commands: diff and apply (bench/diff.py)",
            "## Whole commands: diff and apply (bench/diff.py)\n\n"
            "`nebctl diff` and `nebctl apply` as a user runs them (fresh processes, SQLite, 1,000 sim hosts, after"
            " an apply), beside the floor: parsing the same YAML with CSafeLoader and json-decoding every row of"
            " the resources table.\n\n" + heading + "\n\n" + "\n".join(rows) + "\n",
        )


if __name__ == "__main__":
    main()
