"""Benchmark: the cost of the libvirt inventory (``LibvirtMonitoring.inventory``) on a host with many volumes, and
what reading image volumes' fingerprints adds to it.

Run ``.venv/bin/python bench/libvirt_inventory.py`` (``--disks N``, ``--images N``, ``--repeat N``,
``--no-write``). It needs libvirt-python and a libvirtd on qemu:///system: the daemon is started by
tests/support/libvirtd.py when none answers (as root).

It makes a dir pool in a temporary directory holding ``--disks`` raw volumes of 1 MiB that no ledger claims
(as VMs' disks are: their ownership is on the domain) and ``--images`` volumes claimed in an ownership ledger
(as imported images are), then times, ``--repeat`` times each, taking turns (medians reported):

1. the inventory as it is: one XML read per claimed volume, none for the others;
2. the inventory with the claimed volumes' reads left out (the fingerprints off): what the listing alone costs;
3. one XML read of every volume of the pool: what fingerprinting every volume would add.

The inventory lists every object of the host, so objects of other users of the daemon count too; their number
is printed. Every name starts with a per-run prefix; what carries it is removed at the end, even on failure. It
prints the figures and rewrites its own section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import libvirt  # noqa: E402  # after the path: this tree's nebctl

from bench.results import write_section  # noqa: E402
from nebctl.drivers.libvirt import ledger  # noqa: E402
from nebctl.drivers.libvirt.monitoring import LibvirtMonitoring  # noqa: E402
from nebctl.drivers.libvirt.xmlbuild.storage import PoolElement, VolumeElement  # noqa: E402
from nebctl.drivers.types import HostRef, Ownership  # noqa: E402

URI = "qemu:///system"
SECTION = "## libvirt inventory: image volume fingerprints"
MIB = 1024 * 1024


def median_ms(runs: list[float]) -> float:
    return statistics.median(runs) * 1000


@contextlib.contextmanager
def a_pool(connection: libvirt.virConnect, prefix: str, disks: int, images: int) -> Iterator[libvirt.virStoragePool]:
    """The pool with its volumes and the ledger claiming its images; all removed on the way out."""
    owner = Ownership(prefix, "Image", "default", "bench", installation=prefix)
    with tempfile.TemporaryDirectory(prefix="nebctl-bench-inventory-") as directory:
        pool = connection.storagePoolDefineXML(PoolElement(name=f"{prefix}-pool", path=directory).to_xml(), 0)
        try:
            pool.create(0)
            for index in range(disks):
                pool.createXML(VolumeElement(name=f"disk-{index}", capacity=MIB, format="raw").to_xml(), 0)
            for index in range(images):
                name = f"image-{index}"
                pool.createXML(VolumeElement(name=name, capacity=MIB, format="qcow2").to_xml(), 0)
                entry = ledger.Entry("volume", name, pool.UUIDString(), owner, pool.name(), {"format": "qcow2"})
                ledger.record(connection, URI, entry)
            yield pool
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                connection.nwfilterLookupByName(ledger.ledger_name(owner)).undefine()
            with contextlib.suppress(libvirt.libvirtError):
                for volume in pool.listAllVolumes(0):
                    volume.delete(0)
            with contextlib.suppress(libvirt.libvirtError):
                pool.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                pool.undefine()


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--disks", type=int, default=1000, help="volumes no ledger claims (VMs' disks)")
    parser.add_argument("--images", type=int, default=20, help="volumes a ledger claims (images)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    arguments = parser.parse_args()
    from bench.libvirt_apply import ensure_daemon

    daemon = ensure_daemon()
    prefix = f"benchinv{uuid.uuid4().hex[:6]}"
    host = HostRef("bench", URI)
    connection = libvirt.open(URI)
    try:
        with a_pool(connection, prefix, arguments.disks, arguments.images) as pool:
            driver = LibvirtMonitoring()
            listed = driver.inventory(host)  # connects once, outside the timing
            others = sum(1 for item in listed if item.object == "volume" and item.details.get("pool") != pool.name())
            read = [item for item in listed if item.details.get("pool") == pool.name() and item.fingerprint]
            assert len(read) == arguments.images, f"{len(read)} volumes fingerprinted, not {arguments.images}"
            runs: dict[str, list[float]] = {"as it is": [], "no fingerprints": [], "every volume": []}
            for _ in range(arguments.repeat):
                runs["as it is"].append(timed(lambda: driver.inventory(host)))
                runs["no fingerprints"].append(timed(lambda: _inventory_without_reads(driver, host)))
                runs["every volume"].append(timed(lambda: [v.XMLDesc(0) for v in pool.listAllVolumes(0)]))
    finally:
        connection.close()
        daemon.stop()
    as_is, bare, every = (median_ms(runs[name]) for name in ("as it is", "no fingerprints", "every volume"))
    total = arguments.disks + arguments.images
    per_image = (as_is - bare) / arguments.images if arguments.images else 0.0
    lines = [
        SECTION,
        "",
        f"`bench/libvirt_inventory.py --disks {arguments.disks} --images {arguments.images} --repeat "
        f"{arguments.repeat}` on {platform.node() or 'this machine'} (libvirt {_version()}, qemu:///system, medians; "
        f"{others} volumes of other pools on the daemon were listed too).",
        "",
        "| Inventory of one host | ms |",
        "|---|---|",
        f"| as it is: {arguments.images} image volumes read, {arguments.disks} disks not | {as_is:.1f} |",
        f"| without any volume read (the listing alone) | {bare:.1f} |",
        f"| one XML read of each of the pool's {total} volumes (what fingerprinting all would add) | {every:.1f} |",
        "",
        f"An image volume's fingerprint costs about {per_image:.2f} ms (one XML read); reading every volume "
        f"would cost about {every / total:.2f} ms per volume, {every:.0f} ms for this pool.",
        "",
    ]
    print("\n".join(lines))
    if not arguments.no_write:
        write_section(SECTION, "\n".join(lines))
    return 0


def _inventory_without_reads(driver: LibvirtMonitoring, host: HostRef) -> None:
    """The inventory with the claimed volumes' XML left unread: the claims it is given are empty for volumes."""
    owners = ledger.owners

    def pools_only(entries: Any) -> dict[tuple[str, str, str, str], list[ledger.Entry]]:
        return {key: value for key, value in owners(entries).items() if key[0] != "volume"}

    ledger.owners = pools_only
    try:
        driver.inventory(host)
    finally:
        ledger.owners = owners


def _version() -> str:
    number = libvirt.getVersion()
    return f"{number // 1000000}.{number // 1000 % 1000}.{number % 1000}"


if __name__ == "__main__":
    sys.exit(main())
