"""Benchmark: a 1 GiB qcow2 image from a loopback HTTP server into the image cache, and from the cache into a
libvirt volume, each beside the common tool doing the same in the same run.

Run ``.venv/bin/python bench/images.py`` (``--size MIB`` (1024), ``--repeat N`` (3), ``--no-write``). It needs
qemu-img, curl, virsh, libvirt-python and a libvirtd on qemu:///system (started by tests/support/libvirtd.py
when none answers, as root).

1. The image: ``--size`` MiB of random data converted to qcow2 by qemu-img (so nothing compresses or skips).
2. Download, served by the threaded server of tests/support/httpserver.py (sendfile), run as a process of its
   own on 127.0.0.1 so that it shares nothing with the measured process, in turns:
   - ``curl -s -o FILE URL`` (a process, timed from start to exit);
   - nebctl: ``ImageCache.fetch`` (httpx, the sha256 computed on the way, fsync, rename into the cache),
     timed around the call; the cached file is removed before the next turn.
3. Upload into a volume of a dir pool on qemu:///system, in turns:
   - ``virsh vol-create-as`` + ``virsh vol-upload`` (processes, timed together);
   - nebctl: ``LibvirtStorage.import_image`` of the cached file (stream upload, the sha256 computed from the
     bytes sent); the volume is deleted before the next turn.
4. Reads: the bytes this process read (``rchar`` of /proc/self/io: read system calls on files; receiving from a
   socket does not count) during nebctl's download and upload, as a multiple of the image's size: 0 for the
   download (the file is never read back), 1.0 for the upload (one read of the file); a second read of the file
   for the hash would add 1.0 to either.

Medians of ``--repeat`` turns are reported, with the ratio to the common tool; the target is a download at
least 0.8 of curl's rate. The section of bench/RESULTS.md is rewritten unless ``--no-write``. The page cache
is warm for both sides alike (the file was just written); the pool lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.results import write_section  # noqa: E402
from nebctl.drivers.downloads import ImageCache  # noqa: E402
from tests.support.httpserver import sha256_of  # noqa: E402

SECTION = "## Images: download and upload throughput (bench/images.py)"
MIB = 1024 * 1024
URI = "qemu:///system"


def read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def make_image(directory: Path, size_mib: int) -> Path:
    raw = directory / "image.raw"
    with raw.open("wb") as out:
        for _ in range(size_mib):
            out.write(os.urandom(MIB))
    image = directory / "image.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    raw.unlink()
    return image


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(action: Callable[[], Any]) -> tuple[float, float, float]:
    """Seconds taken, CPU seconds used (here and by child processes) and bytes read during ``action``."""
    before_read, before_cpu, started = read_bytes(), cpu_seconds(), time.perf_counter()
    action()
    return time.perf_counter() - started, cpu_seconds() - before_cpu, read_bytes() - before_read


def ensure_daemon() -> Any:
    from tests.support.libvirtd import start_daemon

    try:
        return start_daemon()
    except BaseException as error:  # pytest's skip/fail outcomes are BaseException subclasses
        if isinstance(error, KeyboardInterrupt):
            raise
        raise SystemExit(f"no libvirtd: {error}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB of data in the image")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args()

    import libvirt

    from nebctl.drivers.libvirt import Connections, LibvirtStorage
    from nebctl.drivers.types import DatastoreDefinition, HostRef, ImageImport

    daemon = ensure_daemon()  # held until the end: the harness stops a daemon nobody holds
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="nebctl-bench-images-", dir="/var/tmp") as scratch:
        root = Path(scratch)
        (root / "served").mkdir()
        image = make_image(root / "served", options.size)
        size, digest = image.stat().st_size, sha256_of(image)
        cache = ImageCache(root / "cache", limit=1 << 40)
        storage = LibvirtStorage(connections=Connections())
        host = HostRef(name="bench", uri=URI)
        pool_name = f"{prefix}-pool"
        storage.create_datastore(host, DatastoreDefinition(name=pool_name, path=str(root / "pool")))
        keys: tuple[str, ...] = ("curl", "curl_cpu", "sha256sum", "sha256sum_cpu", "nebctl", "nebctl_cpu", "fsync")
        keys += ("virsh", "upload", "dread", "uread")
        figures: dict[str, list[float]] = {key: [] for key in keys}

        def measure_turn(turn: int, url: str) -> None:
            target = root / "curl.out"
            seconds, cpu, _ = timed(lambda: subprocess.run(["curl", "-s", "-o", str(target), url], check=True))
            figures["curl"].append(seconds)
            figures["curl_cpu"].append(cpu)
            seconds, cpu, _ = timed(lambda: subprocess.run(["sha256sum", str(target)], check=True, capture_output=True))
            figures["sha256sum"].append(seconds)
            figures["sha256sum_cpu"].append(cpu)
            assert target.stat().st_size == size
            target.unlink()

            fetched: list[Any] = []
            seconds, cpu, reads = timed(lambda: fetched.append(cache.fetch(url, sha256=digest, size=size)))
            figures["nebctl"].append(seconds)
            figures["nebctl_cpu"].append(cpu)
            figures["fsync"].append(fetched[0].transfer.synced)
            figures["dread"].append(reads / size)
            cached = cache.path_of(digest)

            volume = f"{prefix}-virsh{turn}"
            virsh = ["virsh", "-q", "-c", URI]

            def by_virsh(volume: str = volume) -> None:
                subprocess.run(
                    [*virsh, "vol-create-as", pool_name, volume, str(size), "--format", "raw"],
                    check=True,
                    capture_output=True,
                )
                subprocess.run([*virsh, "vol-upload", "--pool", pool_name, volume, str(cached)], check=True)

            seconds, _, _ = timed(by_virsh)
            figures["virsh"].append(seconds)
            storage.delete(host, pool_name, volume)

            request = ImageImport(volume=f"{prefix}-nebctl{turn}", source=str(cached), sha256=digest)
            seconds, _, reads = timed(functools.partial(storage.import_image, host, pool_name, request))
            figures["upload"].append(seconds)
            figures["uread"].append(reads / size)
            storage.delete(host, pool_name, request.volume)
            cached.unlink()
            print(f"turn {turn + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in figures.items()))

        try:
            server = subprocess.Popen(
                [sys.executable, "-m", "tests.support.httpserver", str(root / "served")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            assert server.stdout is not None and server.stdin is not None
            url = f"http://127.0.0.1:{int(server.stdout.readline())}/image.qcow2"
            try:
                for turn in range(options.repeat):
                    measure_turn(turn, url)
            finally:
                server.stdin.close()
                server.wait(timeout=30)
        finally:
            with contextlib.suppress(Exception):
                pool = libvirt.open(URI).storagePoolLookupByName(pool_name)
                for volume in pool.listAllVolumes(0):
                    volume.delete(0)
                pool.destroy()
                pool.undefine()
            storage.connections.close()
            daemon.stop()

    median = {key: statistics.median(values) for key, values in figures.items()}
    rate = {key: size / MIB / median[key] for key in ("curl", "nebctl", "virsh", "upload")}
    received = statistics.median(n - f for n, f in zip(figures["nebctl"], figures["fsync"], strict=True))
    rate["received"] = size / MIB / received
    verified = statistics.median(c + h for c, h in zip(figures["curl"], figures["sha256sum"], strict=True))
    rate["verified"] = size / MIB / verified
    gib = size / (1024 * MIB)
    cpu = {key: median[f"{key}_cpu"] / gib for key in ("curl", "sha256sum", "nebctl")}
    lines = [
        SECTION,
        "",
        f"A {size / MIB:.0f} MiB qcow2 ({options.size} MiB of random data, made by qemu-img) over HTTP on 127.0.0.1,",
        f"medians of {options.repeat} turns taken in alternation, on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()}). Written by bench/images.py.",
        "",
        "| step | common tool | MiB/s | nebctl | MiB/s | nebctl / tool |",
        "|---|---|---|---|---|---|",
        f"| download into the cache | `curl -o` | {rate['curl']:.0f} | `ImageCache.fetch` (sha256 on the way, fsync) "
        f"| {rate['nebctl']:.0f} | {rate['nebctl'] / rate['curl']:.2f} |",
        f"| the same, bytes received (before the final fsync, which curl does not do) | `curl -o` "
        f"| {rate['curl']:.0f} | `ImageCache.fetch` until its fsync | {rate['received']:.0f} "
        f"| {rate['received'] / rate['curl']:.2f} |",
        f"| download and verify | `curl -o` then `sha256sum` | {rate['verified']:.0f} | `ImageCache.fetch` "
        f"| {rate['nebctl']:.0f} | {rate['nebctl'] / rate['verified']:.2f} |",
        f"| cache into a libvirt volume (dir pool, qemu:///system) | `virsh vol-create-as` + `vol-upload` "
        f"| {rate['virsh']:.0f} | `LibvirtStorage.import_image` (stream, sha256 on the way) | {rate['upload']:.0f} "
        f"| {rate['upload'] / rate['virsh']:.2f} |",
        "",
        f"Bytes nebctl's process read from files (`rchar`: read system calls; receiving from a socket does not "
        f"count), as a multiple of the image's size: download {median['dread']:.2f}, upload {median['uread']:.2f}. "
        "The download never reads its file back (the sha256 is computed from the bytes received) and the upload "
        "reads it once (the sha256 is computed from the bytes sent): no second read for the hash. The final "
        f"fsync took {median['fsync']:.1f} s (median): the cache makes the file durable before naming it by its "
        "digest. Target: a download at least 0.8 of curl's rate.",
        "",
        f"CPU seconds per GiB downloaded (user + system, medians): curl {cpu['curl']:.2f}, sha256sum "
        f"{cpu['sha256sum']:.2f}, nebctl {cpu['nebctl']:.2f} (receiving in Python with httpx, hashing and writing "
        "in two threads beside it). The wall-clock ratio depends on a spare core for the hash: on an idle machine "
        "the three threads overlap; on a loaded one (the load average is printed below) nebctl pays for its extra "
        "CPU time in wall time.",
        "",
        f"Load average when the run ended: {', '.join(f'{x:.1f}' for x in os.getloadavg())}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not options.no_write:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
