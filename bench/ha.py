"""Benchmark of ``nebctl serve`` replicas: how fast a follower takes over, and what the lease costs the database.

Three real replicas of one stack on a real PostgreSQL and a real MariaDB server (started from a temporary
directory, as the tests do) and the sim fleet, with the documented lease timings unless told otherwise (a 15 s
lease, renewed every 5 s, a follower trying every 2 s):

- takeover after SIGKILL: from the signal to the ``leader.elected`` event of the next term (written by the new
  leader as it takes the lease), median and max over ``--runs`` kills. Target: within the lease + 2 s.
- takeover after SIGTERM: the same after a clean stop, which releases the lease. Target: under 2 s.
- the lease's write load: rows written per minute to ``leases`` and ``replicas`` (the leader's renewals, every
  replica's heartbeats) with three idle replicas, from PostgreSQL's table statistics over ``--window`` seconds.
  A follower's attempt to take a held lease reads the row under a lock and writes nothing.

Each killed or stopped replica is replaced by a new one before the next run, so three replicas run throughout.
Run from the repository root: ``.venv/bin/python bench/ha.py [--runs 10] [--backends postgresql,mariadb]``;
``--write`` replaces the section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import write_section  # noqa: E402
from nebctl.core.quantities import parse_duration  # noqa: E402
from tests.support.databases import DatabaseServer, start_mariadb, start_postgresql  # noqa: E402
from tests.support.replicas import Replicas, replica_workspace  # noqa: E402

HEADING = "## Replicas: takeover and lease load (bench/ha.py)"


def takeovers(replicas: Replicas, runs: int, sig: signal.Signals) -> list[float]:
    times = []
    _, term = replicas.wait_leader(timeout=120)
    for _ in range(runs):
        leader, term = replicas.wait_leader(above_term=term - 1, timeout=120)
        sent = time.time()
        leader.process.send_signal(sig)
        elected = replicas.wait_elected(above_term=term, timeout=120)
        assert elected.time is not None
        times.append(elected.time.timestamp() - sent)
        term = int(elected.data["term"])
        leader.process.wait(timeout=120)
        replicas.start(1)
        print(f"  {sig.name}: {times[-1]:.2f} s (term {term})", flush=True)
    return times


def write_load(server: DatabaseServer, database: str, window: float) -> float:
    """Rows inserted or updated per minute in the lease and replica tables during ``window`` seconds."""
    import psycopg

    def rows() -> int:
        with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname=database) as connection:
            found = connection.execute(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables "
                "WHERE relname IN ('leases', 'replicas')"
            ).fetchone()
        return int(found[0]) if found else 0

    time.sleep(2)  # the statistics of the writes before the window are flushed
    before = rows()
    time.sleep(window)
    time.sleep(2)
    return (rows() - before) * 60 / window


def run_backend(backend: str, root: Path, runs: int, window: float, timing: dict[str, str]) -> list[str]:
    server = start_postgresql() if backend == "postgresql" else start_mariadb()
    lines = []
    try:
        database = "nebctl_ha_bench"
        workspace = replica_workspace(root / backend, server.create_database(database), vms=2, **timing)
        replicas = Replicas(workspace)
        try:
            replicas.start(3)
            replicas.wait_leader(timeout=120)
            replicas.wait_converged()
            if backend == "postgresql":
                load = write_load(server, database, window)
                lines.append(
                    f"- lease write load, 3 idle replicas: {load:.0f} rows written per minute to `leases` and "
                    f"`replicas` (PostgreSQL table statistics over {window:g} s)"
                )
                print(lines[-1], flush=True)
            lease = parse_duration(timing["lease"])
            for sig, target in ((signal.SIGKILL, lease + 2), (signal.SIGTERM, 2.0)):
                times = takeovers(replicas, runs, sig)
                worst = max(times)
                lines.append(
                    f"- {backend}, takeover after {sig.name}: median {statistics.median(times):.2f} s, max "
                    f"{worst:.2f} s over {len(times)} runs (target < {target:g} s: "
                    f"{'met' if worst < target else 'MISSED'})"
                )
                print(lines[-1], flush=True)
        finally:
            replicas.stop_all()
    finally:
        server.stop()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--backends", default="postgresql,mariadb")
    parser.add_argument("--window", type=float, default=60.0, help="seconds the write load is measured over")
    parser.add_argument("--lease", default="15s")
    parser.add_argument("--renew", default="5s")
    parser.add_argument("--retry", default="2s")
    parser.add_argument("--write", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()
    timing = {"lease": args.lease, "lease_renew": args.renew, "lease_retry": args.retry}
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nebctl-bench-ha-") as tmp:
        for backend in args.backends.split(","):
            lines += run_backend(backend, Path(tmp), args.runs, args.window, timing)
    lines.append(f"- machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end of the run")
    ok = "MISSED" not in "\n".join(lines)
    if args.write:
        command = "python bench/ha.py " + shlex.join(sys.argv[1:])
        section = "\n".join(
            [
                HEADING,
                "",
                f"Command: `{command}` ({platform.python_implementation()} {platform.python_version()}, "
                f"{platform.machine()}; three real `nebctl serve` replicas on the sim fleet; lease {args.lease}, "
                f"renewed every {args.renew}, tried every {args.retry}).",
                "",
                *lines,
            ]
        )
        write_section(HEADING, section)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
