"""Injected latency and faults of the simulated fleet: what they are, and how a call suffers them.

Used by ``sim.fleet.SimFleet``: every driver call passes through ``suffer`` before it touches the fleet. Rules
live in the fleet file (table ``behaviours``), so a test harness, ``nebctl sim fault ...`` or another process
can change them while an apply runs. An action is named ``family.action`` (``virtualization.deploy``); a rule
matches it exactly, by family (``virtualization.*``) or for everything (``*``), on every host or one.

A latency counts from the moment the call reached the sim, as a backend's answer time does: the sim's own reads
before the wait (the host's row, the rules) are part of it, not added to it. The writes of the call, which must
not happen when the wait is cancelled, come after it.

Waiting (latency, hangs) honours the call context: a cancelled call or a passed deadline ends the wait with
``DriverTimeoutError``, which is how the executor cancels a hanging sim action.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nebctl.drivers.context import current
from nebctl.drivers.errors import DriverTimeoutError, PermanentError, TemporaryError


class FaultKind(StrEnum):
    TEMPORARY = "temporary"  # raises TemporaryError
    PERMANENT = "permanent"  # raises PermanentError
    HANG = "hang"  # blocks until cancelled, the deadline, or ``duration`` seconds


class Distribution(StrEnum):
    FIXED = "fixed"  # a seconds
    UNIFORM = "uniform"  # between a and b seconds
    NORMAL = "normal"  # mean a, deviation b, never below zero
    EXPONENTIAL = "exponential"  # mean a


@dataclass(frozen=True)
class Fault:
    action: str
    kind: FaultKind
    host: str | None = None
    probability: float | None = None  # chance per call; None = every call (while ``count`` lasts)
    count: int | None = None  # how many calls fail before the fault goes away; None = no limit
    duration: float | None = None  # for hangs: seconds before the call goes on normally; None = until cancelled
    message: str | None = None


@dataclass(frozen=True)
class Latency:
    action: str
    distribution: Distribution
    a: float
    b: float = 0.0
    host: str | None = None

    def draw(self, rng: random.Random) -> float:
        if self.distribution is Distribution.FIXED:
            return self.a
        if self.distribution is Distribution.UNIFORM:
            return rng.uniform(self.a, self.b)
        if self.distribution is Distribution.NORMAL:
            return max(0.0, rng.gauss(self.a, self.b))
        return rng.expovariate(1.0 / self.a) if self.a > 0 else 0.0


def patterns(action: str) -> tuple[str, str, str]:
    family = action.partition(".")[0]
    return action, f"{family}.*", "*"


_COLUMNS = "id, kind, probability, remaining, duration, distribution, a, b, message"
_MATCHING = f"SELECT {_COLUMNS} FROM behaviours WHERE action IN (?, ?, ?) AND (host IS NULL OR host = ?) ORDER BY id"
# A host's row and the rules that match an action on it, in one statement: every driver call starts with both.
HOST_AND_MATCHING = (
    "SELECT hosts.down, hosts.reason, "
    + ", ".join(f"behaviours.{column}" for column in _COLUMNS.split(", "))
    + " FROM hosts LEFT JOIN behaviours ON behaviours.action IN (?, ?, ?)"
    " AND (behaviours.host IS NULL OR behaviours.host = hosts.name) WHERE hosts.name = ? ORDER BY behaviours.id"
)


def _wait(seconds: float | None, *, what: str) -> None:
    """Sleep up to ``seconds`` (None: forever), cut short by cancellation or the call's deadline."""
    context = current()
    limit = context.remaining(float("inf"))
    wait = limit if seconds is None else min(seconds, limit)
    if wait == float("inf"):
        context.cancelled.wait()
        raise DriverTimeoutError(f"{what}: cancelled", driver="sim")
    if context.cancelled.wait(wait):
        raise DriverTimeoutError(f"{what}: cancelled", driver="sim")
    if seconds is None or seconds > limit:
        raise DriverTimeoutError(f"{what}: deadline passed", driver="sim")


def suffer(
    connection: sqlite3.Connection,
    rng: random.Random,
    *,
    action: str,
    host: str,
    rows: Sequence[tuple[Any, ...]] | None = None,
    since: float | None = None,
) -> None:
    """Apply the latency and the faults that match this call, in the order they were set. ``rows`` are the
    matching rules (``matching``) when the caller read them already, with the host's row; ``since`` is when the
    call reached the sim (``time.monotonic``), which its latency counts from (by default, now)."""
    if rows is None:
        rows = connection.execute(_MATCHING, (*patterns(action), host)).fetchall()
    if not rows:
        return
    answer = time.monotonic() if since is None else since  # when the call answers, as far as latency goes
    for row_id, kind, probability, remaining, duration, distribution, a, b, message in rows:
        if kind == "latency":
            delay = Latency(action, Distribution(distribution), a or 0.0, b or 0.0).draw(rng)
            if delay > 0:
                answer += delay
                _wait(max(0.0, answer - time.monotonic()), what=f"{action} on {host}")
            continue
        if probability is not None and rng.random() >= probability:
            continue
        if remaining is not None:
            # Counted faults are consumed atomically, so two processes never both take the last one.
            cursor = connection.execute(
                "UPDATE behaviours SET remaining = remaining - 1 WHERE id = ? AND remaining > 0", (row_id,)
            )
            if cursor.rowcount == 0:
                continue
            connection.execute("DELETE FROM behaviours WHERE id = ? AND remaining <= 0", (row_id,))
        text = message or f"injected {kind} fault on {action} ({host})"
        if kind == FaultKind.TEMPORARY:
            raise TemporaryError(text, driver="sim")
        if kind == FaultKind.PERMANENT:
            raise PermanentError(text, driver="sim")
        _wait(duration, what=f"{text}: hung")
        answer = time.monotonic()  # a later latency comes on top of the hang
