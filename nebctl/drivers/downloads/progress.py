"""How far a transfer has got: bytes, rate and time left, handed to whoever watches (the executor records it in
the action's result, the CLI draws a bar from it) and written to the log now and then for those who watch no
terminal (the service, CI logs).

Used by ``downloads.fetching`` (downloads) and ``drivers.libvirt.images`` (uploads into a volume).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

Report = Callable[[Mapping[str, Any]], None]


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"  # pragma: no cover - the loop always returns


class ProgressMeter:
    """Counts the bytes of one transfer. ``report`` is called at most every ``interval`` seconds (and once at
    the end) with a plain mapping; a log line is written at most every ``log_interval`` seconds."""

    def __init__(
        self,
        *,
        label: str,
        total: int | None = None,
        report: Report | None = None,
        log: logging.Logger | None = None,
        phase: str = "download",
        interval: float = 0.5,
        log_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.phase = phase
        self.done = 0
        self.resumed = 0  # bytes that were already there when the transfer (re)started
        self._report = report
        self._log = log or logging.getLogger("nebctl.downloads")
        self._interval = interval
        self._log_interval = log_interval
        self._clock = clock
        self._started = clock()
        self._last_report = float("-inf")
        self._last_log = self._started

    def restart_at(self, offset: int, total: int | None) -> None:
        """A (new) response starts at ``offset`` bytes of ``total``: what came before is not counted as rate."""
        if total is not None:
            self.total = total
        self.done = offset
        # The first offset resumed from counts as not moved by this transfer; starting over forgets it.
        self.resumed = (self.resumed or offset) if offset else 0

    def advance(self, count: int) -> None:
        self.done += count
        now = self._clock()
        if now - self._last_report >= self._interval:
            self._last_report = now
            self._emit()
        if now - self._last_log >= self._log_interval:
            self._last_log = now
            self._log.info("%s", self.line())

    def finish(self) -> Mapping[str, Any]:
        """The final figures (reported once more, so a watcher sees 100%)."""
        snapshot = self.snapshot()
        if self._report is not None:
            self._report(snapshot)
        return snapshot

    def elapsed(self) -> float:
        return max(0.0, self._clock() - self._started)

    def rate(self) -> float:
        """Bytes per second moved by this transfer (resumed bytes excluded)."""
        elapsed = self.elapsed()
        moved = max(0, self.done - self.resumed)
        return moved / elapsed if elapsed > 0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        rate = self.rate()
        eta = None
        if self.total is not None and rate > 0:
            eta = round(max(0, self.total - self.done) / rate, 1)
        return {
            "phase": self.phase,
            "source": self.label,
            "bytes": self.done,
            "total": self.total,
            "rate": round(rate),
            "eta": eta,
            "elapsed": round(self.elapsed(), 3),
            "resumed": self.resumed,
        }

    def line(self) -> str:
        snapshot = self.snapshot()
        of = f" of {human_bytes(self.total)} ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = f", ETA {snapshot['eta']:.0f}s" if snapshot["eta"] is not None else ""
        return f"{self.phase} {self.label}: {human_bytes(self.done)}{of}, {human_bytes(snapshot['rate'])}/s{eta}"

    def _emit(self) -> None:
        if self._report is not None:
            self._report(self.snapshot())
