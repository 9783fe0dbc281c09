"""How long the executor's scheduler waits for more outcomes before it journals a round: group commit.

Each round of the executor is one journal transaction, and most of its cost is fixed (begin, commit, one
statement per table) whatever the number of outcomes it carries. Two kinds of apply need opposite things:

- Actions that wait on the world (a hypervisor, a download) leave the interpreter mostly idle. An outcome should
  be journalled the moment it arrives, and its successors started: any wait only delays them.
- Actions that are mostly Python and SQLite (the sim's, a fast local driver's) keep the interpreter busy between
  them and the scheduler. Taking each outcome the moment it arrives then makes rounds of one or two outcomes, and
  the journal's fixed cost per round becomes what the whole apply waits for.

So the scheduler measures how busy the process is: the CPU time it used over the last ``window`` of wall time.
While that is at least ``busy`` CPUs, the interpreter is the bottleneck, and once an outcome has arrived the
scheduler waits for more, up to about what a round costs (never more than ``cap``), or until every running
attempt has answered. Otherwise it does not wait at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Batching:
    """The scheduler's wait for more outcomes. Told each round's journal time, asked how long to wait."""

    def __init__(
        self,
        *,
        cpu: Callable[[], float] = time.process_time,
        wall: Callable[[], float] = time.perf_counter,
        window: float = 0.05,
        busy: float = 0.9,
        cap: float = 0.005,
    ) -> None:
        self._cpu = cpu
        self._wall = wall
        self._window = window
        self._busy = busy
        self._cap = cap
        self._since = (wall(), cpu())
        self._saturated = False
        self._round = 0.0  # a moving average of what journalling a round takes

    def journalled(self, seconds: float) -> None:
        """A round's journal took ``seconds``; once a window has passed, measure how busy the process was."""
        self._round = seconds if self._round == 0.0 else 0.8 * self._round + 0.2 * seconds
        now = self._wall()
        wall_since, cpu_since = self._since
        if now - wall_since >= self._window:
            cpu = self._cpu()
            self._saturated = (cpu - cpu_since) / (now - wall_since) >= self._busy
            self._since = (now, cpu)

    @property
    def saturated(self) -> bool:
        return self._saturated

    def linger(self) -> float:
        """How long to wait for more outcomes once one has arrived: 0 unless the process is saturated."""
        return min(self._round, self._cap) if self._saturated else 0.0
