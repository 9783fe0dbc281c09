"""One http(s) transfer into a local file, robust and verified on the way.

- Interrupted transfers resume where they stopped, with a ``Range`` request (and ``If-Range`` with the first
  answer's validator, so a file that changed meanwhile is fetched whole again instead of spliced).
- Transient failures (connection refused or reset, a silent server, 5xx, 429, a body cut short) are retried with
  exponential backoff until the deadline, which is the action's own (``drivers.context``).
- Redirects are followed up to ``FetchPolicy.max_redirects``.
- A length that contradicts the expected size, or more bytes than were announced, is refused at once.
- The sha256 is computed from the bytes as they are written: the file is never read back to check it. Only a
  partial file left by an earlier process is read once, to seed the digest, before the transfer resumes.
- A digest mismatch is permanent and removes the file: nothing is left behind.

httpx is the client: a synchronous streaming API with per-phase timeouts (connect, read) and a bounded redirect
policy built in, raw (undecoded) body iteration so byte offsets match what ``Range`` counts, and it is the client
the HTTP API's tests use too, so the project carries one HTTP stack rather than two. It is imported on first use.

Used by ``downloads.cache`` (image downloads), ``drivers.libvirt.images`` and the catalogue marketplace driver.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from nebctl import __version__
from nebctl.drivers.downloads.progress import ProgressMeter, Report
from nebctl.drivers.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("nebctl.downloads")

DRIVER = "download"
BATCH_BYTES = 1024 * 1024  # received bytes handed to the writing and hashing threads at once
QUEUED_BATCHES = 16  # batches received but not yet written (or hashed): bounds the memory a transfer holds
USER_AGENT = f"nebctl/{__version__}"


@dataclass(frozen=True)
class FetchPolicy:
    max_redirects: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # the longest a server may stay silent in the middle of a transfer
    initial_delay: float = 0.5  # backoff between attempts: doubled each time, up to max_delay
    max_delay: float = 10.0
    default_deadline: float = 3600.0  # seconds, when the caller has no deadline of its own


@dataclass(frozen=True)
class Transfer:
    """A finished, verified transfer."""

    url: str
    path: Path
    sha256: str
    size: int
    seconds: float
    requests: int  # HTTP requests made, retries and resumptions included
    resumed: int  # bytes that did not have to be fetched again (from earlier attempts)
    synced: float = 0.0  # seconds of ``seconds`` spent waiting for the file to reach the disk (fsync)
    progress: Mapping[str, Any] = field(default_factory=dict)


class _TransientError(Exception):
    """A failure worth another attempt (after ``delay`` seconds when the server said so)."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class _Worker:
    """A thread applying ``work`` to each batch of chunks handed to it, in order: the download's writing and
    hashing run beside its receiving (each releases the GIL on large buffers), so the three overlap on two
    cores. Chunks travel in batches of about ``BATCH_BYTES``: a hand-over per 64 KiB received cost more CPU
    than the hashing."""

    def __init__(self, name: str, work: Callable[[bytes], object]) -> None:
        self.work = work
        self.error: BaseException | None = None
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=QUEUED_BATCHES)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, batch: list[bytes]) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(batch)

    def drain(self) -> None:
        """Wait until every chunk handed over is done; the worker stops (a new one serves what follows)."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self.error is None:
                try:
                    for chunk in batch:
                        self.work(chunk)
                except BaseException as error:  # handed to the receiving thread at its next put or drain
                    self.error = error


class _Body:
    """The file being written and the digest of what it holds so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream: BinaryIO = path.open("a+b")
        self.digest = hashlib.sha256()
        self.offset = 0
        self.from_disk = 0  # bytes found on disk at the start (left by an earlier process)
        self.resumed = 0
        self._workers: tuple[_Worker, _Worker] | None = None
        self._batch: list[bytes] = []
        self._batched = 0
        existing = os.fstat(self.stream.fileno()).st_size
        if existing:
            self.stream.seek(0)
            while chunk := self.stream.read(1024 * 1024):
                self.digest.update(chunk)
            self.offset = self.from_disk = existing

    def write(self, chunk: bytes) -> None:
        self._batch.append(chunk)
        self._batched += len(chunk)
        self.offset += len(chunk)
        if self._batched >= BATCH_BYTES:
            self._hand_over()

    def _hand_over(self) -> None:
        if not self._batch:
            return
        if self._workers is None:
            digest = self.digest  # bound now: a restart replaces the digest only after draining
            self._workers = (
                _Worker("download-write", self.stream.write),
                _Worker("download-hash", digest.update),
            )
        batch, self._batch, self._batched = self._batch, [], 0
        for worker in self._workers:
            worker.put(batch)

    def sync(self) -> None:
        """Everything handed to ``write`` is in the file and the digest."""
        self._hand_over()
        workers, self._workers = self._workers, None
        if workers is not None:
            for worker in workers:
                worker.drain()

    def restart(self) -> None:
        self.sync()
        self.stream.truncate(0)
        self.digest = hashlib.sha256()
        self.offset = 0
        self.from_disk = 0

    def hexdigest(self) -> str:
        self.sync()
        return self.digest.hexdigest()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sync()
        with contextlib.suppress(OSError):
            self.stream.close()

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def fetch(  # noqa: PLR0912, PLR0915 - one download's life: cache, resume, retries, refusals, verification
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    deadline: float | None = None,
    cancelled: threading.Event | None = None,
    report: Report | None = None,
    policy: FetchPolicy | None = None,
) -> Transfer:
    """Download ``url`` into ``target`` (resuming what ``target`` already holds) and verify it.

    ``deadline`` is a ``time.monotonic()`` value; transient failures are retried until then, after which a
    ``TemporaryError`` says what went wrong last (the partial file stays, for the next attempt to resume).
    Permanent failures (4xx, a wrong length, a digest mismatch, too many redirects) remove ``target``.
    """
    import httpx

    policy = policy or FetchPolicy()
    started = time.monotonic()
    deadline = deadline if deadline is not None else started + policy.default_deadline
    meter = ProgressMeter(label=url, total=size, report=report, log=log)
    body = _Body(target)
    requests = 0
    validator: str | None = None
    last_error = "no attempt was made"
    retried_whole = False
    delay = policy.initial_delay
    client = httpx.Client(
        follow_redirects=True,
        max_redirects=policy.max_redirects,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    )
    try:
        while True:
            if cancelled is not None and cancelled.is_set():
                raise TemporaryError(f"{url}: download cancelled", driver=DRIVER)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TemporaryError(
                    f"{url}: gave up after {time.monotonic() - started:.1f}s and {requests} request(s): {last_error}",
                    driver=DRIVER,
                )
            headers = {}
            if body.offset:
                headers["Range"] = f"bytes={body.offset}-"
                if validator:
                    headers["If-Range"] = validator
            requests += 1
            read_timeout = min(policy.read_timeout, remaining)
            timeout = httpx.Timeout(read_timeout, connect=min(policy.connect_timeout, remaining))
            try:
                with client.stream("GET", url, headers=headers, timeout=timeout) as response:
                    validator = _receive(response, body, url=url, size=size, meter=meter, cancelled=cancelled)
            except httpx.TooManyRedirects as error:
                body.discard()
                raise PermanentError(f"{url}: more than {policy.max_redirects} redirects", driver=DRIVER) from error
            except httpx.TimeoutException as error:
                last_error = f"the server sent nothing for {read_timeout:.1f}s ({type(error).__name__})"
            except (httpx.TransportError, httpx.InvalidURL) as error:
                if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
                    body.discard()
                    raise PermanentError(f"{url}: {error}", driver=DRIVER) from error
                last_error = f"{type(error).__name__}: {error}"
            except _TransientError as error:
                last_error = str(error)
                if error.delay is not None:
                    delay = error.delay
            else:
                digest = body.hexdigest()
                if sha256 is not None and digest != sha256.lower():
                    if body.from_disk and not retried_whole:
                        # The part on disk may come from another version of the file: fetch it whole, once.
                        log.warning("%s: the resumed download does not match; fetching it whole", url)
                        retried_whole = True
                        body.restart()
                        continue
                    body.discard()
                    raise PermanentError(
                        f"{url}: sha256 is {digest}, expected {sha256}; the download was discarded", driver=DRIVER
                    )
                if size is not None and body.offset != size:
                    body.discard()
                    raise PermanentError(f"{url}: got {body.offset} bytes, the image is {size} bytes", driver=DRIVER)
                synced = time.monotonic()
                body.stream.flush()
                os.fsync(body.stream.fileno())  # on disk before the cache renames it to its digest
                synced = time.monotonic() - synced
                body.close()
                return Transfer(
                    url=url,
                    path=target,
                    sha256=digest,
                    size=body.offset,
                    seconds=time.monotonic() - started,
                    requests=requests,
                    resumed=body.resumed,
                    synced=synced,
                    progress=meter.finish(),
                )
            log.info("%s: %s; retrying from byte %d", url, last_error, body.offset)
            pause = min(delay, max(0.0, deadline - time.monotonic()))
            if cancelled is not None:
                cancelled.wait(pause)
            else:
                time.sleep(pause)
            delay = min(policy.max_delay, delay * 2)
    except BaseException:
        if body.offset:
            body.close()  # kept for the next attempt to resume
        else:
            body.discard()
        raise
    finally:
        client.close()


def _receive(  # noqa: PLR0912 - each way a response can end, handled where it is read
    response: httpx.Response,
    body: _Body,
    *,
    url: str,
    size: int | None,
    meter: ProgressMeter,
    cancelled: threading.Event | None,
) -> str | None:
    """Append the response's bytes to ``body``; return the validator for the next ``If-Range``."""
    status = response.status_code
    if status == 200:
        if body.offset:
            body.restart()  # the server sent the whole file (no range support, or it changed): start again
    elif status == 206:
        start, total = _content_range(response.headers.get("content-range", ""))
        if start != body.offset:
            body.restart()
            raise _TransientError(f"asked for bytes from {body.offset}, the server answered from {start}")
        if total is not None and size is not None and total != size:
            body.discard()
            raise PermanentError(f"{url}: the server has {total} bytes, the image is {size} bytes", driver=DRIVER)
    elif status == 416:
        body.restart()
        raise _TransientError("the server refused the range asked (416); starting again", delay=0.0)
    elif status in (408, 425, 429) or status >= 500:
        raise _TransientError(f"HTTP {status} {response.reason_phrase}", delay=_retry_after(response))
    else:
        body.discard()
        raise PermanentError(f"{url}: HTTP {status} {response.reason_phrase}", driver=DRIVER)
    if body.offset and not body.resumed:
        body.resumed = body.offset
    announced = response.headers.get("content-length")
    expected = body.offset + int(announced) if announced and announced.isdigit() else size
    if size is not None and expected is not None and expected != size:
        body.discard()
        raise PermanentError(f"{url}: the server announces {expected} bytes, the image is {size} bytes", driver=DRIVER)
    etag: str | None = response.headers.get("etag")
    validator = etag if etag and not etag.startswith("W/") else response.headers.get("last-modified")
    meter.restart_at(body.offset, expected)
    for chunk in response.iter_raw():  # as received (re-chunking to a fixed size doubled the CPU per byte)
        if expected is not None and body.offset + len(chunk) > expected:
            body.discard()
            raise PermanentError(f"{url}: the server sent more than the {expected} bytes expected", driver=DRIVER)
        body.write(chunk)
        meter.advance(len(chunk))
        if cancelled is not None and cancelled.is_set():
            raise TemporaryError(f"{url}: download cancelled", driver=DRIVER)
    if expected is not None and body.offset < expected:
        raise _TransientError(f"the connection ended after {body.offset} of {expected} bytes")
    return validator


def _content_range(text: str) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None when ``*``)."""
    try:
        unit, _, spec = text.strip().partition(" ")
        span, _, total = spec.partition("/")
        if unit != "bytes":
            raise ValueError(text)
        return int(span.split("-", 1)[0]), None if total == "*" else int(total)
    except ValueError:
        return -1, None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None
