"""Slowing repeated failed logins, per user name and per client address, in the memory of one process.

After ``free`` failures within ``window`` seconds, each further attempt must wait a delay that doubles with each
failure (from ``delay`` up to ``max_delay``); an attempt made sooner is refused without checking the password.
Unknown and known user names are counted alike, so the throttle tells nothing about which exist. A success
clears the user's count (not the address's: one good account must not launder an address's guesses).
Used by ``authenticating.Authenticator``; each replica of the service keeps its own counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int
    last: float


class LoginThrottle:
    def __init__(
        self,
        *,
        free: int = 3,
        delay: float = 0.5,
        max_delay: float = 30.0,
        window: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = 100_000,
    ) -> None:
        self.free = free
        self.delay = delay
        self.max_delay = max_delay
        self.window = window
        self._clock = clock
        self._capacity = capacity  # keys kept at most: a flood of made-up names must not exhaust memory
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def _wait_for(self, key: str, now: float) -> float:
        failures = self._failures.get(key)
        if failures is None or now - failures.last > self.window:
            return 0.0
        excess = failures.count - self.free
        if excess < 0:
            return 0.0
        delay = min(self.max_delay, self.delay * 2.0**excess)
        return max(0.0, failures.last + delay - now)

    def retry_after(self, user: str, address: str | None) -> float:
        """Seconds before another attempt for ``user`` from ``address`` may be checked (0: now)."""
        now = self._clock()
        with self._lock:
            return max(self._wait_for(f"user:{user}", now), self._wait_for(f"addr:{address}", now) if address else 0.0)

    def failed(self, user: str, address: str | None) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self._capacity:
                self._forget_old(now)
            for key in (f"user:{user}", f"addr:{address}" if address else None):
                if key is None:
                    continue
                failures = self._failures.get(key)
                if failures is None or now - failures.last > self.window:
                    self._failures[key] = _Failures(1, now)
                else:
                    failures.count += 1
                    failures.last = now

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{user}", None)

    def _forget_old(self, now: float) -> None:
        for key in [k for k, f in self._failures.items() if now - f.last > self.window]:
            del self._failures[key]
        while len(self._failures) >= self._capacity:  # all recent: drop the oldest
            del self._failures[min(self._failures, key=lambda k: self._failures[k].last)]
