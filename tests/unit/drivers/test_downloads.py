"""Image downloads against a real threaded HTTP server serving real qcow2 images made with qemu-img: resume
after a cut, sha256 checked on the way, refusals that leave nothing behind, retries until the deadline, one
download for many importers, eviction, progress.

The expected digests are computed here with hashlib over the files qemu-img wrote; the request counts and the
Range headers are what the server saw.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from nebctl.drivers.downloads import FetchPolicy, ImageCache, ProgressMeter, fetch
from nebctl.drivers.errors import PermanentError, TemporaryError
from tests.support.httpserver import Behaviour, ImageServer, image_server, sha256_of

MiB = 1024 * 1024
FAST = FetchPolicy(initial_delay=0.01, max_delay=0.05, read_timeout=5.0)


def make_qcow2(directory: Path, name: str, *, data_mib: int = 3, seed: int = 1) -> Path:
    """A qcow2 holding ``data_mib`` MiB of pseudo-random data (so it is that large on disk)."""
    raw = directory / f"{name}.raw"
    raw.write_bytes(_random_bytes(data_mib * MiB, seed))
    image = directory / f"{name}.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    raw.unlink()
    return image


def _random_bytes(count: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(count)


@pytest.fixture()
def server() -> Iterator[ImageServer]:
    with image_server() as running:
        yield running


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    return make_qcow2(tmp_path, "debian")


def cache_files(cache: ImageCache) -> list[str]:
    """Every file the cache holds, complete or partial (lock files aside)."""
    return sorted(
        str(path.relative_to(cache.root))
        for path in cache.root.rglob("*")
        if path.is_file() and not path.name.endswith(".lock")
    )


def test_a_download_cut_in_the_middle_resumes_with_range_and_matches(
    server: ImageServer, image: Path, tmp_path: Path
) -> None:
    server.put("debian.qcow2", image)
    server.behave("debian.qcow2", Behaviour(cut_after=MiB, cuts=2))
    cache = ImageCache(tmp_path / "cache", limit=1 << 40, policy=FAST)
    expected = sha256_of(image)

    cached = cache.fetch(server.url("debian.qcow2"), sha256=expected, size=image.stat().st_size)

    assert cached.sha256 == expected
    assert sha256_of(cached.path) == expected
    assert cached.path.read_bytes() == image.read_bytes()
    assert server.count("debian.qcow2") == 3
    ranges = [headers.get("range") for path, headers in server.headers_seen]
    assert ranges == [None, f"bytes={MiB}-", f"bytes={2 * MiB}-"]
    assert cached.transfer is not None and cached.transfer.resumed == MiB
    assert cache_files(cache) == [f"sha256/{expected}"]


def test_a_part_left_by_an_earlier_process_is_resumed_not_fetched_again(
    server: ImageServer, image: Path, tmp_path: Path
) -> None:
    server.put("debian.qcow2", image)
    expected = sha256_of(image)
    cache = ImageCache(tmp_path / "cache", limit=1 << 40, policy=FAST)
    part = cache.root / "partial" / f"{expected}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(image.read_bytes()[: 2 * MiB])

    cached = cache.fetch(server.url("debian.qcow2"), sha256=expected)

    assert sha256_of(cached.path) == expected
    assert [headers.get("range") for _, headers in server.headers_seen] == [f"bytes={2 * MiB}-"]
    assert not part.exists()


def test_a_wrong_sha256_is_refused_and_nothing_is_left(server: ImageServer, image: Path, tmp_path: Path) -> None:
    server.put("debian.qcow2", image)
    cache = ImageCache(tmp_path / "cache", limit=1 << 40, policy=FAST)
    wrong = "0" * 64

    with pytest.raises(PermanentError, match=f"sha256 is {sha256_of(image)}, expected {wrong}"):
        cache.fetch(server.url("debian.qcow2"), sha256=wrong)

    assert cache_files(cache) == []


def test_a_missing_image_is_a_clear_permanent_error(server: ImageServer, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache", limit=1 << 40, policy=FAST)
    url = server.url("nowhere.qcow2")
    with pytest.raises(PermanentError, match=f"{url}: HTTP 404 Not Found"):
        cache.fetch(url, sha256="a" * 64)
    assert server.count("nowhere.qcow2") == 1  # a 404 is not retried
    assert cache_files(cache) == []


def test_a_silent_server_gives_up_at_the_deadline_with_a_clear_error(
    server: ImageServer, image: Path, tmp_path: Path
) -> None:
    server.put("slow.qcow2", image)
    server.behave("slow.qcow2", Behaviour(delay=3.0))
    cache = ImageCache(tmp_path / "cache", limit=1 << 40, policy=FAST)
    started = time.monotonic()

    with pytest.raises(TemporaryError) as caught:
        cache.fetch(server.url("slow.qcow2"), sha256=sha256_of(image), deadline=time.monotonic() + 1.0)

    assert time.monotonic() - started < 2.5
    message = str(caught.value)
    assert message.startswith(f"download: {server.url('slow.qcow2')}: gave up after")
    assert "the server sent nothing for" in message and "ReadTimeout" in message
    assert cache_files(cache) == []  # nothing arrived, so no partial file either


def test_transient_server_errors_are_retried_until_it_answers(server: ImageServer, image: Path, tmp_path: Path) -> None:
    server.put("debian.qcow2", image)
    server.behave("debian.qcow2", Behaviour(status=503))
    cache = ImageCache(tmp_path / "cache", limit=1 << 40, policy=FAST)
    result: dict[str, Any] = {}

    def download() -> None:
        try:
            result["cached"] = cache.fetch(server.url("debian.qcow2"), sha256=sha256_of(image))
        except Exception as error:  # reported below
            result["error"] = error

    worker = threading.Thread(target=download)
    worker.start()
    deadline = time.monotonic() + 10
    while server.count("debian.qcow2") < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    del server.behaviours["debian.qcow2"]  # the server recovers
    worker.join(timeout=20)
    assert "error" not in result
    assert sha256_of(result["cached"].path) == sha256_of(image)
    assert server.count("debian.qcow2") >= 4


def test_redirects_are_followed_within_the_limit(server: ImageServer, image: Path, tmp_path: Path) -> None:
    server.put("debian.qcow2", image)
    server.behave("latest.qcow2", Behaviour(redirect="v2.qcow2"))
    server.behave("v2.qcow2", Behaviour(redirect="debian.qcow2"))
    server.behave("loop.qcow2", Behaviour(redirect="loop.qcow2"))
    cache = ImageCache(tmp_path / "cache", limit=1 << 40, policy=FAST)

    cached = cache.fetch(server.url("latest.qcow2"), sha256=sha256_of(image))
    assert sha256_of(cached.path) == sha256_of(image)

    with pytest.raises(PermanentError, match="more than 5 redirects"):
        cache.fetch(server.url("loop.qcow2"), sha256="b" * 64)
    assert server.count("loop.qcow2") == 6  # the first request and five redirects


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (Behaviour(content_length=5 * MiB), "the server announces 5242880 bytes, the image is {size} bytes"),
        (Behaviour(no_length=True, extra=b"x" * 100), "the server sent more than the {size} bytes expected"),
    ],
    ids=["wrong-length", "too-much"],
)
def test_a_length_contradicting_the_image_is_refused(
    server: ImageServer, image: Path, tmp_path: Path, behaviour: Behaviour, message: str
) -> None:
    size = image.stat().st_size
    server.put("debian.qcow2", image)
    server.behave("debian.qcow2", behaviour)
    cache = ImageCache(tmp_path / "cache", limit=1 << 40, policy=FAST)
    with pytest.raises(PermanentError, match=message.format(size=size)):
        cache.fetch(server.url("debian.qcow2"), sha256=sha256_of(image), size=size)
    assert cache_files(cache) == []


def test_too_little_without_a_length_is_a_short_body_that_resumes(
    server: ImageServer, image: Path, tmp_path: Path
) -> None:
    """A close-delimited body that ends early is only known short by the size the catalogue gave."""
    size = image.stat().st_size
    server.put("debian.qcow2", image)
    server.behave("debian.qcow2", Behaviour(no_length=True, cut_after=MiB, cuts=1))
    cache = ImageCache(tmp_path / "cache", limit=1 << 40, policy=FAST)
    cached = cache.fetch(server.url("debian.qcow2"), sha256=sha256_of(image), size=size)
    assert cached.size == size
    assert [headers.get("range") for _, headers in server.headers_seen] == [None, f"bytes={MiB}-"]


def test_three_importers_at_once_make_one_download(server: ImageServer, image: Path, tmp_path: Path) -> None:
    server.put("debian.qcow2", image)
    server.behave("debian.qcow2", Behaviour(delay=0.3))  # so that the three overlap
    cache = ImageCache(tmp_path / "cache", limit=1 << 40, policy=FAST)
    expected = sha256_of(image)
    results: list[Path] = []
    barrier = threading.Barrier(3)

    def importer() -> None:
        barrier.wait()
        results.append(cache.fetch(server.url("debian.qcow2"), sha256=expected).path)

    workers = [threading.Thread(target=importer) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert results == [cache.path_of(expected)] * 3
    assert server.count("debian.qcow2") == 1


def test_the_least_recently_used_images_are_evicted_over_the_limit(server: ImageServer, tmp_path: Path) -> None:
    images = {name: make_qcow2(tmp_path, name, data_mib=1, seed=index) for index, name in enumerate("abc")}
    digests = {name: sha256_of(path) for name, path in images.items()}
    for name, path in images.items():
        server.put(f"{name}.qcow2", path)
    sizes = {name: path.stat().st_size for name, path in images.items()}
    cache = ImageCache(tmp_path / "cache", limit=sizes["a"] + sizes["b"] + sizes["c"] - 1, policy=FAST)
    cache.fetch(server.url("a.qcow2"), sha256=digests["a"])
    cache.fetch(server.url("b.qcow2"), sha256=digests["b"])
    old = time.time() - 60
    os.utime(cache.path_of(digests["a"]), (old, old))
    os.utime(cache.path_of(digests["b"]), (old - 60, old - 60))  # b is the least recently used
    cache.fetch(server.url("a.qcow2"), sha256=digests["a"])  # a hit: refreshes a, downloads nothing
    assert server.count("a.qcow2") == 1

    cache.fetch(server.url("c.qcow2"), sha256=digests["c"])

    assert {entry.sha256 for entry in cache.entries()} == {digests["a"], digests["c"]}


def test_progress_is_reported_while_the_bytes_arrive(server: ImageServer, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path, "big", data_mib=8)
    server.put("big.qcow2", image)
    reports: list[Mapping[str, Any]] = []
    size = image.stat().st_size

    transfer = fetch(
        server.url("big.qcow2"), tmp_path / "out", sha256=sha256_of(image), size=size, report=reports.append
    )

    assert transfer.size == size
    assert reports, "no progress was reported"
    assert [report["bytes"] for report in reports] == sorted(report["bytes"] for report in reports)
    final = reports[-1]
    assert final["bytes"] == final["total"] == size
    assert final["source"] == server.url("big.qcow2") and final["phase"] == "download"
    assert final["rate"] > 0


def test_the_progress_meter_reports_rate_and_time_left_with_a_fake_clock() -> None:
    now = [100.0]
    reports: list[Mapping[str, Any]] = []
    meter = ProgressMeter(label="u", total=1000, report=reports.append, interval=1.0, clock=lambda: now[0])
    meter.restart_at(200, 1000)  # resumed at 200 bytes: they do not count as moved
    now[0] = 102.0
    meter.advance(300)  # 300 bytes in 2 s: 150 B/s; 500 left: 3.3 s
    now[0] = 102.5
    meter.advance(100)  # within the interval: not reported
    assert [(r["bytes"], r["rate"], r["eta"], r["resumed"]) for r in reports] == [(500, 150, 3.3, 200)]
    final = meter.finish()
    assert (final["bytes"], final["rate"], final["eta"]) == (600, 160, 2.5)  # 400 B in 2.5 s
    assert meter.line() == "download u: 600 B of 1000 B (60%), 160 B/s, ETA 2s"
