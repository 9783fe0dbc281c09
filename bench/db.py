"""Benchmark of the state database: 10,000 resources and 100,000 journal rows written and read back.

Run ``.venv/bin/python bench/db.py`` (``--backends sqlite,postgresql,mariadb``; the servers are started from
``tests/support/databases.py`` when their packages are installed, with their default durability). It prints
the figures and rewrites its own section of ``bench/RESULTS.md``. The write pattern is the executor's: each
resource save and each action state change is its own transaction; the journal is first written in bulk per
apply (1,000 actions each), as ``journal_actions`` does.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.results import RESULTS, write_section  # noqa: E402
from nebctl.core.keys import Kind  # noqa: E402
from nebctl.database import ActionRecord, ResourceRecord, Store  # noqa: E402

RESOURCES = 10_000
APPLIES = 100
ACTIONS_PER_APPLY = 1_000  # 100,000 journal rows
UPDATES = 10_000  # single-row journal updates, one transaction each
SECTION = "## Database (bench/db.py)"


def timed(label: str, count: int, figures: list[tuple[str, float, int]], action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    figures.append((label, elapsed, count))
    print(f"  {label:<48} {elapsed:8.2f} s  {count / elapsed:10.0f} /s", flush=True)


def run(url: str) -> list[tuple[str, float, int]]:
    store = Store.open(url)
    figures: list[tuple[str, float, int]] = []
    spec = {"vcpu": 2, "memory": "2Gi", "disks": [{"image": "debian-12", "size": "20Gi"}], "nics": [{"network": "lan"}]}
    records = [
        ResourceRecord(Kind.VIRTUAL_MACHINE, "default", f"vm-{i:05d}", "bench", desired=spec, desired_hash=f"{i:064x}")
        for i in range(RESOURCES)
    ]

    def save_each() -> None:
        for record in records:
            store.save_resource(record)

    timed("save_resource x10,000 (a transaction each)", RESOURCES, figures, save_each)
    timed("list_resources (10,000 back)", RESOURCES, figures, lambda: len(store.list_resources(stack="bench")))
    timed("save_resources (10,000 in one bulk upsert)", RESOURCES, figures, lambda: store.save_resources(records))

    apply_ids: list[int] = []

    def journal() -> None:
        for a in range(APPLIES):
            apply_id = store.begin_apply(stack="bench", revision=None, plan={}, holder="bench")
            apply_ids.append(apply_id)
            store.journal_actions(
                apply_id,
                [
                    ActionRecord(
                        f"vm/vm-{i:05d}:deploy",
                        Kind.VIRTUAL_MACHINE,
                        "default",
                        f"vm-{i:05d}",
                        "virtualization",
                        "deploy",
                        host="kvm1",
                        depends_on=(f"network/lan-{a}:create",),
                    )
                    for i in range(ACTIONS_PER_APPLY)
                ],
            )

    timed("journal_actions (100 applies x 1,000 actions)", APPLIES * ACTIONS_PER_APPLY, figures, journal)

    def update_each() -> None:
        apply_id = apply_ids[-1]
        for i in range(UPDATES):
            store.update_action(
                apply_id if i < ACTIONS_PER_APPLY else apply_ids[i // ACTIONS_PER_APPLY],
                f"vm/vm-{i % ACTIONS_PER_APPLY:05d}:deploy",
                state="succeeded",
                attempts=1,
            )

    timed("update_action x10,000 (a transaction each)", UPDATES, figures, update_each)

    def update_batched() -> None:
        apply_id = apply_ids[0]
        for i in range(0, ACTIONS_PER_APPLY, 2):
            with store.batch() as tx:
                tx.update_action(apply_id, f"vm/vm-{i:05d}:deploy", state="succeeded", attempts=2)
                tx.save_resource(records[i])
                tx.add_event(type="action.succeeded", message="done")

    timed("batch(action + resource + event) x500", ACTIONS_PER_APPLY // 2, figures, update_batched)

    def read_journal() -> None:
        total = sum(len(store.actions_of(apply_id)) for apply_id in apply_ids)
        assert total == APPLIES * ACTIONS_PER_APPLY, total

    timed("actions_of x100 (100,000 rows back)", APPLIES * ACTIONS_PER_APPLY, figures, read_journal)
    store.close()
    return figures


def write_results(command: str, results: dict[str, list[tuple[str, float, int]]], notes: list[str]) -> None:
    lines = [
        SECTION,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.node()}, Python {platform.python_version()}"
        f", {platform.machine()}; {time.strftime('%Y-%m-%d')}.",
        "",
    ]
    backends = list(results)
    lines.append("| operation | " + " | ".join(backends) + " |")
    lines.append("|---|" + "---|" * len(backends))
    for index, (label, _, _) in enumerate(next(iter(results.values()))):
        cells = []
        for backend in backends:
            _, elapsed, count = results[backend][index]
            cells.append(f"{elapsed:.2f} s ({count / elapsed:,.0f}/s)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Single-row writes on the servers are bound by the disk's fsync latency (each is a durable commit, as the",
        "executor's journal needs); bulk writes and reads show the per-row cost. The machine's load during the run",
        "(other benchmarks and test suites in parallel) makes every figure a lower bound.",
        *notes,
        "",
    ]
    write_section(SECTION, "\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql,mariadb")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    arguments = parser.parse_args()
    from tests.support.databases import ServerUnavailable, start_mariadb, start_postgresql

    results: dict[str, list[tuple[str, float, int]]] = {}
    notes: list[str] = []
    for backend in arguments.backends.split(","):
        print(f"{backend}:", flush=True)
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as directory:
                results["SQLite (WAL, synchronous=NORMAL)"] = run(f"sqlite:///{directory}/bench.db")
            continue
        try:
            server = start_postgresql(durable=True) if backend == "postgresql" else start_mariadb(durable=True)
        except ServerUnavailable as error:
            print(f"  skipped: {error}")
            notes.append(f"{backend}: not measured ({error}).")
            continue
        try:
            url = server.create_database("nebctl_bench")
            label = "PostgreSQL 15" if backend == "postgresql" else "MariaDB 10.11"
            results[f"{label} (loopback, default durability)"] = run(url)
        finally:
            server.stop()
    if not arguments.no_write and results:
        command = ".venv/bin/python bench/db.py" + (
            f" --backends {arguments.backends}" if arguments.backends != "sqlite,postgresql,mariadb" else ""
        )
        write_results(command, results, notes)
        print(f"written to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
