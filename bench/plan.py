"""Benchmark of the planner: a full plan (everything to create) and a no-op plan (everything converged).

Sizes are numbers of VMs, spread over 1,000 sim hosts, with the shared resources around them (one datastore
on every host, two images, four /16 networks, a security group): 1,000, 10,000 and 100,000 VMs. Each
(size, case) runs in a fresh subprocess. The wall time is that of the planning call alone; the memory figures
are the process's resident set before the call (the inputs: documents, records, live view, the interpreter)
and its peak during the call (the peak is reset before it, Linux ``clear_refs``), so the peak counts the
inputs too and the difference is what planning itself needs.

- ``pure``: ``make_plan`` on values built in memory: documents as validated models, a ``LiveView`` of every
  host and VM, and for the no-op case records whose ``applied`` spec is the one a previous plan resolved
  (what ``Controller.apply`` stores).
- ``controller``: ``Controller.plan()`` through the real sim driver and a SQLite store (observation, the
  database read and the plan), for the smaller sizes; the no-op case first applies the full plan for real.

Run: ``.venv/bin/python bench/plan.py`` (all sizes), or ``--sizes 1000 10000 --modes pure``; ``--runs N`` runs each
row N times (the median wall time and its range). Targets:
a no-op plan of 10,000 resources under 1 s, of 100,000 under 10 s, peak memory under 1 GiB.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.results import write_block  # noqa: E402

HOSTS = 1000
NETWORKS = 4
IMAGES = 2
MiB = 1024**2
GiB = 1024**3


def manifests(vms: int, hosts: int = HOSTS) -> list[dict[str, Any]]:
    """The manifest documents as plain data (what YAML would load to)."""
    docs: list[dict[str, Any]] = []

    def add(kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> None:
        docs.append(
            {"apiVersion": "nebctl/v1", "kind": kind, "metadata": {"name": name, "labels": labels or {}}, "spec": spec}
        )

    for index in range(hosts):
        add(
            "Host",
            f"h{index:04d}",
            {"uri": f"sim://h{index:04d}?cpus=128&memory=1Ti&disk=64Ti", "overcommit": {"cpu": 8}},
            {"zone": "ab"[index % 2]},
        )
    add("Datastore", "local", {"type": "dir", "path": "/var/lib/nebctl/local"})
    for index in range(IMAGES):
        add("Image", f"img{index}", {"source": f"/images/img{index}.qcow2", "format": "qcow2", "datastore": "local"})
    for index in range(NETWORKS):
        add("Network", f"net{index}", {"mode": "nat", "cidr": f"10.{index}.0.0/16"})
    add("SecurityGroup", "ssh", {"rules": [{"direction": "in", "protocol": "tcp", "ports": [22]}]})
    for index in range(vms):
        # Half fixed on a host, half placed by policy (a quarter by requirements): the planner does it all.
        if index % 2 == 0:
            placement: dict[str, Any] = {"host": f"h{index % hosts:04d}"}
        elif index % 4 == 1:
            placement = {"policy": "striping"}
        else:
            placement = {"requirements": "labels.zone == 'b'", "policy": "packing"}
        add(
            "VirtualMachine",
            f"vm{index:06d}",
            {
                "vcpu": 1 + index % 4,
                "memory": (256 << (index % 3)) * MiB,
                "disks": [{"image": f"img{index % IMAGES}", "size": 4 * GiB}, {"size": GiB}],
                "nics": [{"network": f"net{index % NETWORKS}", "securityGroups": ["ssh"]}],
                "placement": placement,
            },
        )
    return docs


def documents(vms: int, hosts: int = HOSTS) -> dict[Any, Any]:
    from nebctl.core.keys import Kind, ResourceKey
    from nebctl.schemas.models import MODEL_BY_KIND

    result: dict[Any, Any] = {}
    for doc in manifests(vms, hosts):
        kind = Kind(doc["kind"])
        result[ResourceKey.of(kind, doc["metadata"]["name"])] = MODEL_BY_KIND[kind].model_validate(doc)
    return result


def run_pure(vms: int, case: str) -> dict[str, Any]:
    from nebctl.controller import planning
    from nebctl.controller.planning import PlanRequest

    make_plan = planning.make_plan
    from nebctl.core.keys import Kind
    from nebctl.database.records import ResourceRecord
    from nebctl.drivers.states import HostLiveState, VMLiveState
    from nebctl.drivers.types import HostProbe, VMStatus
    from nebctl.reconcilers.base import LiveView
    from nebctl.reconcilers.identity import vm_uuid

    docs = documents(vms)
    hosts = {
        key.name: HostProbe(
            name=key.name, state=HostLiveState.ONLINE, cpus=128, memory=1024 * GiB, disk_free=64 * 1024 * GiB
        )
        for key in docs
        if key.kind is Kind.HOST
    }
    request = PlanRequest(stack="bench", documents=docs, records={}, live=LiveView(hosts=hosts))
    if case == "noop":
        specs = _specs_elsewhere(request)
        records: dict[Any, Any] = {}
        statuses: dict[str, VMStatus] = {}
        vm_hosts: dict[str, str] = {}
        for key, spec in specs.items():
            is_vm = key.kind is Kind.VIRTUAL_MACHINE
            uuid = vm_uuid(key) if is_vm else ""
            records[key] = ResourceRecord(
                kind=key.kind,
                namespace=key.namespace,
                name=key.name,
                stack="bench",
                applied=spec,
                status="running" if is_vm else "ready",
                live={"uuid": uuid} if is_vm else {},
                host=spec["host"] if is_vm else None,
            )
            if is_vm:
                statuses[uuid] = VMStatus(uuid, key.name, VMLiveState.RUNNING, spec["vcpu"], spec["memory"])
                vm_hosts[uuid] = spec["host"]
        request = PlanRequest(
            stack="bench", documents=docs, records=records, live=LiveView(hosts=hosts, vms=statuses, vm_hosts=vm_hosts)
        )
    rss_before = _reset_peak()
    start = time.perf_counter()
    plan = make_plan(request)
    wall = time.perf_counter() - start
    peak = _status("VmHWM")
    changes = sum(1 for change in plan.changes if change.is_change)
    if case == "noop":
        assert changes == 0, "the no-op plan has changes"
    return {
        "resources": len(docs),
        "changes": changes,
        "actions": len(plan.actions),
        "wall": wall,
        "rss_before": rss_before,
        "peak_rss": peak,
    }


def _specs_elsewhere(request: Any) -> dict[Any, Any]:
    """The resolved specs of a full plan of ``request``, computed in a forked process: the full plan's own
    memory (the allocator keeps it once freed) must not count as the no-op plan's."""
    import multiprocessing

    _FORKED["request"] = request  # inherited by the forked worker, not pickled to it
    with multiprocessing.get_context("fork").Pool(1) as pool:
        specs: dict[Any, Any] = pool.apply(_specs_of_request)
    return specs


_FORKED: dict[str, Any] = {}


def _specs_of_request() -> dict[Any, Any]:
    from nebctl.controller.planning import plan_with_specs

    return dict(plan_with_specs(_FORKED["request"])[1])


def run_controller(vms: int, case: str, hosts: int) -> dict[str, Any]:
    from nebctl.controller.applying import Controller, PlanOptions
    from nebctl.core.settings import Settings
    from nebctl.database.store import Store
    from nebctl.drivers.registry import build_registry

    docs = documents(vms, hosts)
    with tempfile.TemporaryDirectory(prefix="nebctl-bench-") as directory:
        settings = Settings(state_dir=Path(directory), parallelism=16)
        store = Store.open(f"sqlite:///{Path(directory) / 'state.db'}")
        controller = Controller(store=store, registry=build_registry(settings, entry_points=False), settings=settings)
        options = PlanOptions(stack="bench")
        apply_wall = None
        if case == "noop":
            begin = time.perf_counter()
            result = controller.apply(controller.plan(docs, options), parallelism=16)
            apply_wall = time.perf_counter() - begin
            assert result.state == "succeeded", result.state
        rss_before = _reset_peak()
        start = time.perf_counter()
        planned = controller.plan(docs, options)
        wall = time.perf_counter() - start
        peak = _status("VmHWM")
        store.close()
    changes = sum(1 for change in planned.plan.changes if change.is_change)
    if case == "noop":
        assert changes == 0, "the no-op plan has changes"
    return {
        "resources": len(docs),
        "changes": changes,
        "actions": len(planned.plan.actions),
        "wall": wall,
        "rss_before": rss_before,
        "peak_rss": peak,
        "apply_wall": apply_wall,
    }


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory figure (VmRSS, VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> int:
    """Forget the peak RSS so far (Linux: ``clear_refs`` 5), so that the next peak is the planning call's own
    and not that of building its inputs (the no-op case makes a full plan first to get the applied specs).
    Returns the RSS now."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def child(args: argparse.Namespace) -> None:
    if args.mode == "pure":
        figures = run_pure(args.size, args.case)
    else:
        figures = run_controller(args.size, args.case, args.hosts)
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--modes", nargs="+", default=["pure", "controller"], choices=["pure", "controller"])
    parser.add_argument(
        "--controller-sizes", type=int, nargs="+", default=[1000, 10000], help="sizes run through the sim"
    )
    parser.add_argument("--controller-hosts", type=int, default=HOSTS, help="sim hosts of the controller runs")
    parser.add_argument("--runs", type=int, default=1, help="runs of each row: the median wall time and its range")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="pure", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--case", default="noop", help=argparse.SUPPRESS)
    parser.add_argument("--hosts", type=int, default=HOSTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    # Markdown rows, printed as they come and written to bench/RESULTS.md at the end.
    rows = [
        "| planner | hosts | VMs | resources | case | changes | actions | wall | RSS before | peak RSS |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(rows), flush=True)
    for mode in args.modes:
        for size in args.sizes:
            if mode == "controller" and size not in args.controller_sizes:
                continue
            hosts = args.controller_hosts if mode == "controller" else HOSTS
            for case in ("full", "noop"):
                command = [sys.executable, __file__, "--child", "--mode", mode, "--size", str(size)]
                command += ["--case", case, "--hosts", str(hosts)]
                runs = []
                for _ in range(args.runs):  # each a fresh process
                    done = subprocess.run(command, check=False, capture_output=True, text=True)
                    if done.returncode != 0:
                        rows.append(f"| {mode} | {hosts} | {size} | | {case} | failed: {done.stderr[-300:]!r} |")
                        break
                    runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                else:
                    figures = runs[0]
                    walls = [run["wall"] for run in runs]
                    wall = f"{statistics.median(walls):.2f} s"
                    if len(walls) > 1:
                        wall += f" ({min(walls):.2f}-{max(walls):.2f})"
                    rows.append(
                        f"| {mode} | {hosts:,} | {size:,} | {figures['resources']:,} | {case}"
                        f" | {figures['changes']:,} | {figures['actions']:,} | {wall}"
                        f" | {max(run['rss_before'] for run in runs) / MiB:,.0f} MiB"
                        f" | {max(run['peak_rss'] for run in runs) / MiB:,.0f} MiB |"
                    )
                print(rows[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    command_line = " ".join(["python bench/plan.py", *sys.argv[1:]])
    load = os.getloadavg()[0]
    heading = (
        f"Last run: `{command_line}` on {datetime.date.today()}, at {commit.stdout.strip() or 'an unknown commit'},"
        f" load average {load:.1f} at the end."
    )
    write_block("bench/plan.py figures", heading + "\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
