"""The image cache: downloaded images kept by sha256 in the data directory, so that an image is fetched once
however many hosts import it, and fetched again only after it was evicted.

Layout under the cache's root (``Settings.image_cache.dir``, by default ``DATA_DIR/images``)::

    sha256/HEX          complete, verified images; the name is their digest
    partial/HEX.part    a download in progress or interrupted (resumed by the next attempt)
    partial/HEX.lock    held (flock) by whoever downloads HEX: threads and processes wait for it, then find the
                        finished file instead of downloading it again

A file reaches ``sha256/`` only by an atomic rename after its digest matched, so a crash leaves either a
resumable part or a verified image, never a wrong one under a digest's name. The cache keeps its total size
under ``limit`` by removing the least recently used images (a hit refreshes the file's time); an image in use
is never removed by its own fetch, and a file already open for an upload stays readable after removal.

Used by the controller's execution world (``controller.applying``), which hands the cached path to each host's
storage driver.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nebctl.drivers.downloads.fetching import FetchPolicy, Transfer, fetch
from nebctl.drivers.downloads.progress import Report
from nebctl.drivers.errors import PermanentError, TemporaryError

log = logging.getLogger("nebctl.downloads")

HEX_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class CachedImage:
    path: Path
    sha256: str
    size: int
    transfer: Transfer | None  # None: it was in the cache already


@dataclass(frozen=True)
class CacheEntry:
    sha256: str
    size: int
    used: float  # the file's mtime: when it was last fetched or used


class ImageCache:
    def __init__(self, root: Path, *, limit: int, policy: FetchPolicy | None = None) -> None:
        self.root = root
        self.limit = limit
        self.policy = policy or FetchPolicy()
        self._guard = threading.Lock()  # one eviction at a time within this process

    def path_of(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256

    def fetch(
        self,
        url: str,
        *,
        sha256: str,
        size: int | None = None,
        deadline: float | None = None,
        cancelled: threading.Event | None = None,
        report: Report | None = None,
    ) -> CachedImage:
        """The cached image of digest ``sha256``, downloaded from ``url`` unless it is there already."""
        sha256 = sha256.lower()
        if len(sha256) != 64 or not set(sha256) <= HEX_DIGITS:
            raise PermanentError(f"{url}: {sha256!r} is not a sha256 digest", driver="download")
        final = self.path_of(sha256)
        hit = self._hit(final)
        if hit is not None:
            return hit
        with self._download_lock(sha256, deadline=deadline, cancelled=cancelled, url=url):
            hit = self._hit(final)  # another thread or process finished it while this one waited
            if hit is not None:
                return hit
            part = self.root / "partial" / f"{sha256}.part"
            transfer = fetch(
                url,
                part,
                sha256=sha256,
                size=size,
                deadline=deadline,
                cancelled=cancelled,
                report=report,
                policy=self.policy,
            )
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final)
            _fsync_directory(final.parent)
        log.info("%s: %d bytes cached as %s in %.1fs", url, transfer.size, sha256, transfer.seconds)
        self.evict(keep=sha256)
        return CachedImage(final, sha256, transfer.size, transfer)

    def entries(self) -> list[CacheEntry]:
        """Every complete image, least recently used first."""
        found: list[CacheEntry] = []
        with contextlib.suppress(FileNotFoundError):
            for item in os.scandir(self.root / "sha256"):
                with contextlib.suppress(FileNotFoundError):
                    stat = item.stat()
                    found.append(CacheEntry(item.name, stat.st_size, stat.st_mtime))
        return sorted(found, key=lambda entry: (entry.used, entry.sha256))

    def evict(self, *, keep: str | None = None) -> list[str]:
        """Remove the least recently used images until the cache fits its limit; return their digests."""
        removed: list[str] = []
        with self._guard:
            entries = self.entries()
            total = sum(entry.size for entry in entries)
            for entry in entries:
                if total <= self.limit:
                    break
                if entry.sha256 == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    self.path_of(entry.sha256).unlink()
                total -= entry.size
                removed.append(entry.sha256)
        if removed:
            log.info("image cache over %d bytes: evicted %s", self.limit, ", ".join(removed))
        if total > self.limit:
            log.warning("image cache holds %d bytes, over its limit of %d: the image in use is kept", total, self.limit)
        return removed

    def _hit(self, final: Path) -> CachedImage | None:
        try:
            os.utime(final)  # least recently used goes first
            size = final.stat().st_size
        except FileNotFoundError:
            return None
        return CachedImage(final, final.name, size, None)

    @contextlib.contextmanager
    def _download_lock(
        self, sha256: str, *, deadline: float | None, cancelled: threading.Event | None, url: str
    ) -> Iterator[None]:
        """Exclusive right to download ``sha256``, between threads (each opens its own descriptor, and flock
        locks belong to the open file) and processes alike; waits until ``deadline``."""
        path = self.root / "partial" / f"{sha256}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TemporaryError(
                            f"{url}: still being downloaded by another action; gave up waiting", driver="download"
                        ) from None
                    if cancelled is not None and cancelled.wait(0.05):
                        raise TemporaryError(f"{url}: download cancelled", driver="download") from None
                    if cancelled is None:
                        time.sleep(0.05)
            yield
        finally:
            os.close(descriptor)  # releases the lock


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
