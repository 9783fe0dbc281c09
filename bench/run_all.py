"""Every benchmark of bench/, one after another, each writing its own section of bench/RESULTS.md (``make bench``).

Each runs as its own process, with the arguments that make it write its figures: the state database
(``db.py``), the planner (``plan.py``), the apply loop (``apply.py --write``), observations (``observations.py``),
accounting and samples (``accounting.py``), the image cache (``images.py``), the service (``serve.py --write``),
recovery (``recover.py``), the dashboard (``dashboard.py --write``), the HTTP API (``api.py --write``), replicas
(``ha.py --write``), whole ``diff`` and ``apply`` commands (``diff.py``, the longest), and on libvirtd: the
inventory's cost with many volumes (``libvirt_inventory.py``), the libvirt comparison (``libvirt_apply.py``,
which downloads Ansible into bench/.venv-ansible; ``--skip-ansible`` is passed on to it) and the service's heal
through lifecycle events (``heal.py``, real QEMU guests). ``--only NAME...`` runs some of them. A benchmark that
fails does not stop the others; the exit status says whether any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# name -> the arguments after the script; the order is the cheapest first.
BENCHMARKS: dict[str, list[str]] = {
    "apply": ["--write"],
    "plan": [],
    "db": [],
    "observations": [],
    "accounting": [],
    "images": [],
    "serve": ["--write"],
    "recover": [],
    "dashboard": ["--write"],
    "api": ["--write"],
    "ha": ["--write"],
    "diff": [],
    "libvirt_inventory": [],
    "libvirt_apply": [],
    "heal": [],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run these benchmarks only")
    parser.add_argument("--skip-ansible", action="store_true", help="passed on to libvirt_apply.py")
    args = parser.parse_args()
    failed: list[str] = []
    for name, arguments in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        extra = ["--skip-ansible"] if name == "libvirt_apply" and args.skip_ansible else []
        command = [sys.executable, str(BENCH / f"{name}.py"), *arguments, *extra]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        code = subprocess.run(command, check=False, cwd=BENCH.parent).returncode
        print(f"== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
