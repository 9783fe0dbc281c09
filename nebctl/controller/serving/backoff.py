"""Per-resource exponential backoff of the service's heals, so that a resource that cannot be healed is tried
again later and later (2 s, 6 s, 18 s... capped at 5 minutes by default) instead of in a hot loop.

A pure value over a clock handed in (seconds, any origin): ``syncing`` asks which drifted resources may be healed
now, records each failed heal, and resets a resource once it is in sync again; the service sleeps until the
earliest ``next_deadline``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Attempts:
    failures: int  # failed heals in a row
    next_at: float  # when the next heal may start (clock seconds)


class Backoff(Generic[K]):
    def __init__(self, *, initial: float = 2.0, factor: float = 3.0, maximum: float = 300.0) -> None:
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self._attempts: dict[K, Attempts] = {}

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row: initial, initial x factor, ... up to maximum."""
        if failures <= 0:
            return 0.0
        # Capped before the power can overflow: the exponent grows without bound for a resource failing forever.
        delay = self.initial
        for _ in range(failures - 1):
            delay *= self.factor
            if delay >= self.maximum:
                return self.maximum
        return min(delay, self.maximum)

    def failed(self, key: K, now: float) -> Attempts:
        failures = self._attempts[key].failures + 1 if key in self._attempts else 1
        attempts = Attempts(failures, now + self.delay(failures))
        self._attempts[key] = attempts
        return attempts

    def ready(self, key: K, now: float) -> bool:
        attempts = self._attempts.get(key)
        return attempts is None or now >= attempts.next_at

    def waiting(self, keys: Iterable[K], now: float) -> set[K]:
        """Those of ``keys`` whose next heal may not start yet."""
        return {key for key in keys if not self.ready(key, now)}

    def reset(self, key: K) -> Attempts | None:
        """Forget the failures of ``key`` (it is in sync again); returns what it had."""
        return self._attempts.pop(key, None)

    def get(self, key: K) -> Attempts | None:
        return self._attempts.get(key)

    def tracked(self) -> list[K]:
        return list(self._attempts)

    def next_deadline(self) -> float | None:
        """The earliest time at which a resource that failed may be healed again (past ones included: the
        caller remembers which deadline it already acted on)."""
        return min((a.next_at for a in self._attempts.values()), default=None)
