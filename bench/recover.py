"""Benchmark of ``nebctl recover``: rebuilding the records of 10,000 VMs over 1,000 simulated hosts.

The fleet is written straight into a sim fleet file, as an apply leaves it: every host with a network, a
datastore and an image volume, and 10 VMs per host, each with a disk and a NIC, every object carrying its
ownership (format 1, with the applied spec). Then the three steps of a recover are timed: the survey (through
the sim drivers, one host probe, one bulk VM probe and one inventory call per host, 16 hosts at a time), the
pure rebuilding, and the one transaction writing the records into an SQLite database; and the whole. Target:
under 5 s for the whole. Run ``.venv/bin/python bench/recover.py [--vms 10000] [--hosts 1000]``; it prints the
figures and rewrites its own section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.results import write_section  # noqa: E402
from nebctl.controller.recovering import rebuild, survey  # noqa: E402
from nebctl.core.keys import Kind, ResourceKey  # noqa: E402
from nebctl.core.settings import Settings  # noqa: E402
from nebctl.database import Store  # noqa: E402
from nebctl.drivers import ownership  # noqa: E402
from nebctl.drivers.registry import build_registry  # noqa: E402
from nebctl.drivers.sim.fleet import open_fleet  # noqa: E402
from nebctl.drivers.types import HostRef, Ownership  # noqa: E402
from nebctl.reconcilers.identity import disk_volume, mac_address, vm_uuid  # noqa: E402

SECTION = "## Recover (bench/recover.py)"
STACK = "bench"
INSTALLATION = "bench-installation"
GiB = 1024**3


def owner(kind: Kind, name: str, spec: dict[str, object]) -> str:
    text = ownership.dumps(Ownership(STACK, kind.value, "default", name, 0, INSTALLATION, spec))
    assert text is not None
    return text


def populate(path: Path, *, vms: int, hosts: int) -> None:
    """The fleet file as an apply of ``vms`` VMs over ``hosts`` hosts leaves it."""
    names = [f"h{index:04d}" for index in range(hosts)]
    with open_fleet(Settings(state_dir=path)) as fleet:
        for name in names:
            fleet.add_host(name, uri=f"sim://{name}", cpus=64, memory=512 * GiB, disk=4096 * GiB)
        spans = {"hosts": names}
        network = owner(Kind.NETWORK, "lan", {"mode": "nat", "cidr": "10.0.0.0/16", **spans})
        pool = owner(Kind.DATASTORE, "local", {"type": "dir", "path": "/var/lib/nebctl/local", **spans})
        image = owner(Kind.IMAGE, "debian-12", {"source": "/images/debian-12.qcow2", "datastore": "local", **spans})
        now = time.time()
        with fleet.write() as connection:
            for name in names:
                connection.execute(
                    "INSERT INTO networks VALUES (?, 'lan', '{\"bridge\": \"virbr-lan\"}', ?)", (name, network)
                )
                connection.execute("INSERT INTO datastores VALUES (?, 'local', '/var/lib/nebctl/local', 'dir', ?)",
                                   (name, pool))  # fmt: skip
                connection.execute(
                    "INSERT INTO volumes VALUES (?, 'local', 'image-debian-12', '/p', ?, ?, 'qcow2', NULL, NULL, "
                    "'/images/debian-12.qcow2', ?)",
                    (name, 2 * GiB, 2 * GiB, image),
                )
            rows = []
            volumes = []
            for index in range(vms):
                name = f"vm-{index:06d}"
                key = ResourceKey(Kind.VIRTUAL_MACHINE, "default", name)
                host = names[index % hosts]
                ip = f"10.0.{index // 250}.{index % 250 + 2}"
                spec = {
                    "state": "running",
                    "vcpu": 2,
                    "memory": 2 * GiB,
                    "host": host,
                    "disks": [{"image": "debian-12", "size": 20 * GiB, "datastore": "local", "clone": "overlay"}],
                    "nics": [{"network": "lan", "ip": ip, "mac": mac_address(key, 0), "securityGroups": []}],
                    "placement": {"policy": "striping"},
                    "cloudInit": None,
                    "metadata": {"labels": {"app": "bench"}},
                }
                text = owner(Kind.VIRTUAL_MACHINE, name, spec)
                rows.append((vm_uuid(key), host, name, "running", 2, 2 * GiB, "{}", text, now, now))
                disk = ownership.dumps(Ownership(STACK, key.kind.value, "default", name, 0, INSTALLATION))
                volumes.append((host, disk_volume(key, 0), 20 * GiB, disk))
            connection.executemany("INSERT INTO vms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            connection.executemany(
                "INSERT INTO volumes VALUES (?, 'local', ?, '/p', ?, 0, 'qcow2', 'image-debian-12', NULL, NULL, ?)",
                volumes,
            )


def run(vms: int, hosts: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        populate(root, vms=vms, hosts=hosts)
        registry = build_registry(Settings(state_dir=root), entry_points=False)
        refs = {f"h{i:04d}": (HostRef(f"h{i:04d}", f"sim://h{i:04d}"), None) for i in range(hosts)}
        try:
            with Store.open(f"sqlite:///{root}/nebctl.db") as store:
                started = time.perf_counter()
                found = survey(refs, registry, parallelism=16)
                surveyed = time.perf_counter()
                recovery = rebuild(found, installation=INSTALLATION, records={}, stacks={STACK})
                rebuilt = time.perf_counter()
                store.save_resources(recovery.records)
                written = time.perf_counter()
                assert not recovery.problems, recovery.problems[:3]
                assert len(recovery.records) == vms + 3  # the VMs, the network, the datastore, the image
                assert len(store.list_resources(kind=Kind.VIRTUAL_MACHINE)) == vms
        finally:
            registry.close()
        figures["survey (1 probe + 1 VM probe + 1 inventory per host)"] = surveyed - started
        figures["rebuild (pure)"] = rebuilt - surveyed
        figures["write the records (one transaction)"] = written - rebuilt
        figures["recover, whole"] = written - started
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    arguments = parser.parse_args()
    figures = run(arguments.vms, arguments.hosts)
    load = os.getloadavg()[0]
    lines = [
        SECTION,
        "",
        f"{arguments.vms:,} VMs over {arguments.hosts:,} sim hosts (each with a network, a datastore and an image "
        f"volume), every object carrying its ownership; SQLite database. Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load {load:.1f} when run. Target: the whole under 5 s.",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {label} | {seconds:.2f} |" for label, seconds in figures.items()),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(SECTION, text)


if __name__ == "__main__":
    main()
