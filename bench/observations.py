"""Benchmark of keeping what was observed: what ``diff`` and ``apply`` add to every plan so that ``get`` and
``describe`` can show the live state beside the record.

For N VMs spread over 1,000 hosts (plus the hosts), with records as an apply leaves them and a live view where
one VM in ten was stopped behind nebctl's back: the time of ``observations()`` (the pure step: the drift of each
VM from its record) and of ``Store.record_observations`` (the rows of the probed hosts deleted, a row per host
and per VM that differs written, in an SQLite file), twice (the second replaces the first: the case of every
plan after the first), and of reading them back as ``get`` does. Run
``.venv/bin/python bench/observations.py [--sizes 1000 10000 100000]``; it prints the figures and rewrites its
own section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.results import write_section  # noqa: E402
from nebctl.controller.observing import observations  # noqa: E402
from nebctl.core.keys import Kind, ResourceKey  # noqa: E402
from nebctl.database import ResourceRecord, Store  # noqa: E402
from nebctl.drivers.states import HostLiveState, VMLiveState  # noqa: E402
from nebctl.drivers.types import HostProbe, VMStatus  # noqa: E402
from nebctl.reconcilers.base import LiveView  # noqa: E402
from nebctl.reconcilers.identity import vm_uuid  # noqa: E402

HOSTS = 1000
SECTION = "## Keeping observations (bench/observations.py)"
GiB = 1024**3


def world(vms: int) -> tuple[dict[ResourceKey, ResourceRecord], LiveView]:
    records: dict[ResourceKey, ResourceRecord] = {}
    hosts = {}
    statuses = {}
    vm_hosts = {}
    for index in range(HOSTS):
        name = f"h{index:04d}"
        records[ResourceKey(Kind.HOST, "default", name)] = ResourceRecord(
            Kind.HOST, "default", name, "bench", applied={"uri": f"sim://{name}"}, status="ready"
        )
        hosts[name] = HostProbe(name, HostLiveState.ONLINE, cpus=128, memory=1024 * GiB, load=0.5)
    for index in range(vms):
        key = ResourceKey(Kind.VIRTUAL_MACHINE, "default", f"vm-{index:06d}")
        host = f"h{index % HOSTS:04d}"
        applied = {"state": "running", "vcpu": 2, "memory": 2 * GiB, "host": host}
        uuid = vm_uuid(key)
        live = {"uuid": uuid, "host": host, "state": "running"}  # as an apply records it
        records[key] = ResourceRecord(key.kind, key.namespace, key.name, "bench", applied=applied, host=host,
                                      status="running", live=live)  # fmt: skip
        state = VMLiveState.STOPPED if index % 10 == 0 else VMLiveState.RUNNING
        statuses[uuid] = VMStatus(uuid, key.name, state, vcpu=2, memory=2 * GiB)
        vm_hosts[uuid] = host
    return records, LiveView(hosts=hosts, vms=statuses, vm_hosts=vm_hosts)


def run(vms: int) -> dict[str, float]:
    records, live = world(vms)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory, Store.open(f"sqlite:///{directory}/bench.db") as store:
        started = time.perf_counter()
        found = observations(records, live)
        figures["observations()"] = time.perf_counter() - started
        drifted = (vms + 9) // 10
        assert len(found) == drifted + HOSTS  # a row per host, and per VM that differs from its record
        for label in ("first write", "next write (replace)"):
            started = time.perf_counter()
            store.record_observations(found, probed=list(live.hosts))
            figures[label] = time.perf_counter() - started
        started = time.perf_counter()
        assert len(store.list_observations()) == drifted + HOSTS
        figures["read back (get)"] = time.perf_counter() - started
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    args = parser.parse_args()
    rows = []
    for vms in args.sizes:
        figures = run(vms)
        print(f"{vms:>7} VMs: " + ", ".join(f"{label} {seconds:.3f} s" for label, seconds in figures.items()))
        rows.append((vms, figures))
    labels = list(rows[0][1])
    lines = [
        SECTION,
        "",
        f"What `diff` and `apply` add to each plan to keep what they observed, for N VMs over {HOSTS:,} hosts (one",
        "VM in ten stopped behind nebctl's back, so N/10 + 1,000 rows), SQLite file; seconds. Python "
        f"{platform.python_version()}, {platform.machine()}; a machine shared with other work, so figures vary.",
        "",
        "| VMs | " + " | ".join(labels) + " |",
        "|---:|" + "---:|" * len(labels),
    ]
    lines += [f"| {vms:,} | " + " | ".join(f"{figures[label]:.3f}" for label in labels) + " |" for vms, figures in rows]
    write_section(SECTION, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
