"""The executor: runs a plan's action graph in parallel, as soon as each action's dependencies have succeeded.

Each attempt runs in its own worker thread, under a ``drivers.context.CallContext`` carrying its deadline and a
cancel flag; the scheduler (the calling thread) never blocks on a driver. Temporary errors are retried with
exponential backoff and jitter up to a limit (a driver's suggested delay wins); permanent ones fail at once. A
failed action blocks only its descendants, which are reported as skipped with the failure that blocked them.
An attempt that outlives its timeout is abandoned (its cancel flag is set; an external program's process group
is killed by the exec driver) and counts as a temporary failure.

Every state change goes to a ``Journal`` before the next step depends on it; the scheduler hands the journal
all the changes of one round at once, so a durable journal commits one transaction per round instead of one
per change. While the process is saturated, the scheduler waits a little for more outcomes before a round
(``applying.batching``), so that each transaction carries more of them. ``stop`` ends the run gracefully (no
new actions; running ones finish), ``cancel`` abandons the running ones too. Who calls it:
``controller.applying.controller``.

A round is on every action's path: an action's start must be durable before it runs, so a slot freed by an
outcome waits for the round that journals that outcome and the next start (at 50 ms per action, 0.7 ms of the
slot's 52; bench/apply.py). So, while the process is not saturated, each round also journals the starts of a few
ready actions beyond the free slots (``queued``, at most a quarter of the parallelism). When an outcome frees a
slot, a queued action starts at once, and the round that journals the outcome (and records the queued one as
running) follows. While saturated, the extra updates would only add work: nothing is queued. A queued action
starts this way only within ``QUEUED_FRESH`` of the last round, so that an action never starts long after the
last write that showed this process may still act (a replica's writes are fenced by its lease). A queued action
that never started is cancelled at the end like a pending one; after a crash, ``_close_interrupted`` closes it
as possibly started.
"""

from __future__ import annotations

import heapq
import logging
import queue
import random
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from nebctl.controller.applying.batching import Batching
from nebctl.core.plans import Action, Plan
from nebctl.core.settings import RetryPolicy
from nebctl.drivers.context import CallContext, ProgramWatch, calling
from nebctl.drivers.errors import DriverError, DriverTimeoutError, TemporaryError

log = logging.getLogger(__name__)

QUEUED_FRESH = 1.0  # seconds after a round within which a queued action may start before the next round


class Outcome(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"  # its start is journalled: it runs the moment a slot frees, without waiting for a round
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # a dependency failed
    CANCELLED = "cancelled"  # stopped by the user before or while running


@dataclass(frozen=True)
class Change:
    """One journal entry: an action moved to ``state``."""

    action: Action
    state: Outcome
    attempts: int = 0
    error: str | None = None
    result: Mapping[str, Any] | None = None
    blocked_by: str | None = None
    retry_in: float | None = None  # set on a failed attempt that will be retried


class Journal(Protocol):
    def record(self, changes: Sequence[Change]) -> None:
        """Persist these changes (in one transaction, where the journal is durable) before returning."""
        ...


@dataclass
class ActionReport:
    action: Action
    state: Outcome = Outcome.PENDING
    attempts: int = 0
    error: str | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    blocked_by: str | None = None
    started: float | None = None
    finished: float | None = None


@dataclass
class ExecutionReport:
    reports: dict[str, ActionReport]
    interrupted: bool = False
    wall_time: float = 0.0

    def with_state(self, state: Outcome) -> list[ActionReport]:
        return [report for report in self.reports.values() if report.state is state]

    @property
    def ok(self) -> bool:
        return all(report.state is Outcome.SUCCEEDED for report in self.reports.values())


Runner = Callable[[Action], Mapping[str, Any]]


@dataclass
class _Attempt:
    action: Action
    number: int
    context: CallContext
    deadline: float


class Executor:
    """Runs one plan. Construct, then ``run()`` once."""

    def __init__(
        self,
        plan: Plan,
        runner: Runner,
        *,
        journal: Journal,
        parallelism: int = 16,
        retry: RetryPolicy | None = None,
        timeout_for: Callable[[Action], float] = lambda action: 300.0,
        stop: threading.Event | None = None,
        cancel: threading.Event | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Sequence[Change]], None] | None = None,
        programs: ProgramWatch | None = None,
        batching: Batching | None = None,
    ) -> None:
        self.plan = plan
        self.batching = batching or Batching()
        self.programs = programs  # told of the external programs the drivers start
        self.runner = runner
        self.journal = journal
        self.parallelism = max(1, parallelism)
        self.retry = retry or RetryPolicy()
        self.timeout_for = timeout_for
        self.stop = stop or threading.Event()
        self.cancel = cancel or threading.Event()
        self.rng = rng or random.Random()
        self.clock = clock
        self.on_change = on_change
        self._actions = {action.id: action for action in plan.actions}
        self._needs = {action.id: 0 for action in plan.actions}
        self._successors: dict[str, list[str]] = {action.id: [] for action in plan.actions}
        for before, after in plan.edges:
            self._needs[after] += 1
            self._successors[before].append(after)
        self._reports = {action.id: ActionReport(action) for action in plan.actions}
        # Outcomes of attempts. A ``Queue``, not a ``SimpleQueue``: the scheduler waits on it in the main thread,
        # where Ctrl-C's handler runs, and CPython's ``SimpleQueue.get(timeout=...)``, interrupted by a handler
        # that returns after the timeout, waits again with no timeout at all: the cancel it set went unseen
        # until some attempt finished, and a hanging one never does.
        self._done: queue.Queue[tuple[str, int, Mapping[str, Any] | None, BaseException | None]] = queue.Queue()
        self._running: dict[str, _Attempt] = {}
        self._waiting: list[tuple[float, int, str]] = []  # retry heap: (when, tie-break, action id)
        self._pending_changes: list[Change] = []
        # Progress reported by running attempts (a download's bytes): journalled as the action's result.
        self._progress: queue.SimpleQueue[tuple[str, int, Mapping[str, Any]]] = queue.SimpleQueue()
        self._workers = _Workers()
        self.reserve = max(1, self.parallelism // 4)
        self._journalled_at = float("-inf")

    # --- the scheduling loop ------------------------------------------------------------------------------

    def run(self) -> ExecutionReport:
        try:
            return self._run()
        finally:
            self._workers.close()

    def _run(self) -> ExecutionReport:
        started = self.clock()
        ready: deque[str] = deque(sorted(a for a, n in self._needs.items() if n == 0))
        queued: deque[str] = deque()
        sequence = 0
        while ready or queued or self._running or self._waiting:
            if self.cancel.is_set():
                self._abandon_running()
                break
            if self.stop.is_set():
                ready.clear()
                queued.clear()  # never started: cancelled at the end, like the pending ones
                self._waiting.clear()
                if not self._running:
                    break
            now = self.clock()
            while self._waiting and self._waiting[0][0] <= now and not self.stop.is_set():
                ready.append(heapq.heappop(self._waiting)[2])
            launches = self._starts(ready, queued)
            self._flush()  # the last round's outcomes and these starts, durable before anything new runs
            for action_id in launches:
                self._launch(action_id)
            # Wait for a completion, a retry coming due, a deadline, or a stop request.
            wait = self._next_wakeup()
            try:
                finished = [self._done.get(timeout=wait)]
            except queue.Empty:
                finished = []
            while True:
                try:
                    finished.append(self._done.get_nowait())
                except queue.Empty:
                    break
            if finished:
                self._linger(finished)
            for action_id, number, result, error in finished:
                attempt = self._running.get(action_id)
                if attempt is None or attempt.number != number:
                    continue  # a late answer from an abandoned attempt: it was already counted as timed out
                del self._running[action_id]
                sequence += 1
                self._settle(action_id, result, error, ready, sequence)
            self._record_progress()
            self._expire_deadlines(ready)
            self._launch_queued(queued)
            # No flush here: the outcomes just settled are journalled at the top of the next round together
            # with the starts they unblock, in one transaction, still before any of those starts runs.
        self._finish_unreached()
        self._flush()
        interrupted = self.stop.is_set() or self.cancel.is_set()
        return ExecutionReport(self._reports, interrupted=interrupted, wall_time=self.clock() - started)

    def _starts(self, ready: deque[str], queued: deque[str]) -> list[str]:
        """The actions to launch after this round (queued ones first), and the ready ones it queues."""
        launches: list[str] = []
        while (queued or ready) and len(self._running) + len(launches) < self.parallelism:
            action_id = queued.popleft() if queued else ready.popleft()
            self._start(action_id, Outcome.RUNNING)
            launches.append(action_id)
        while ready and len(queued) < self.reserve and not self.batching.saturated:
            action_id = ready.popleft()
            self._start(action_id, Outcome.QUEUED)
            queued.append(action_id)
        return launches

    def _start(self, action_id: str, state: Outcome) -> None:
        """A new attempt of ``action_id``, running or queued, for the next round to journal."""
        report = self._reports[action_id]
        if report.state is not Outcome.QUEUED:
            report.attempts += 1
        report.state = state
        if state is Outcome.RUNNING:
            report.started = report.started or self.clock()
        self._change(Change(report.action, state, attempts=report.attempts))

    def _launch_queued(self, queued: deque[str]) -> None:
        """Fill the slots the last outcomes freed with queued actions, before the round that journals those
        outcomes: their starts are durable already. Only while that journal is recent, so that an action never
        starts long after the last write that proved this process may still act (a replica's fenced lease)."""
        if self.stop.is_set() or self.cancel.is_set() or time.perf_counter() - self._journalled_at > QUEUED_FRESH:
            return
        while queued and len(self._running) < self.parallelism:
            action_id = queued.popleft()
            self._start(action_id, Outcome.RUNNING)
            self._launch(action_id)

    def _linger(self, finished: list[tuple[str, int, Mapping[str, Any] | None, BaseException | None]]) -> None:
        """Wait for more outcomes while the batching says it is worth it and some attempt has not answered."""
        linger = self.batching.linger()
        if linger <= 0.0:
            return
        until = time.monotonic() + linger
        while len(finished) < len(self._running):
            remaining = until - time.monotonic()
            if remaining <= 0.0:
                return
            try:
                finished.append(self._done.get(timeout=remaining))
            except queue.Empty:
                return

    def _next_wakeup(self) -> float:
        candidates = [0.2]  # re-check stop/cancel flags at least this often
        now = self.clock()
        if self._waiting:
            candidates.append(self._waiting[0][0] - now)
        candidates.extend(attempt.deadline - now for attempt in self._running.values())
        return max(0.0, min(candidates))

    def _launch(self, action_id: str) -> None:
        action = self._actions[action_id]
        report = self._reports[action_id]
        timeout = self.timeout_for(action)
        deadline = self.clock() + timeout
        number = report.attempts
        context = CallContext(
            deadline=time.monotonic() + timeout,
            progress=lambda progress: self._progress.put((action_id, number, dict(progress))),
            programs=self.programs,
        )
        attempt = _Attempt(action, report.attempts, context, deadline)
        self._running[action_id] = attempt

        def work() -> None:
            try:
                with calling(context):
                    result = self.runner(action)
                self._done.put((action_id, attempt.number, result, None))
            except BaseException as error:  # reported to the scheduler, which decides
                self._done.put((action_id, attempt.number, None, error))

        self._workers.submit(work, name=f"action {action_id}")

    def _record_progress(self) -> None:
        """The latest progress of each attempt still running, as a running change carrying it as its result."""
        latest: dict[str, tuple[int, Mapping[str, Any]]] = {}
        while True:
            try:
                action_id, number, progress = self._progress.get_nowait()
            except queue.Empty:
                break
            latest[action_id] = (number, progress)
        for action_id, (number, progress) in latest.items():
            attempt = self._running.get(action_id)
            if attempt is not None and attempt.number == number:
                report = self._reports[action_id]
                self._change(Change(report.action, Outcome.RUNNING, attempts=number, result={"progress": progress}))

    def _settle(
        self,
        action_id: str,
        result: Mapping[str, Any] | None,
        error: BaseException | None,
        ready: deque[str],
        sequence: int,
    ) -> None:
        report = self._reports[action_id]
        if error is None:
            report.state = Outcome.SUCCEEDED
            report.result = dict(result or {})
            report.error = None
            report.finished = self.clock()
            self._change(Change(report.action, Outcome.SUCCEEDED, attempts=report.attempts, result=report.result))
            for successor in self._successors[action_id]:
                self._needs[successor] -= 1
                if self._needs[successor] == 0 and self._reports[successor].state is Outcome.PENDING:
                    ready.append(successor)
            return
        self._failed_attempt(action_id, error, sequence)

    def _failed_attempt(self, action_id: str, error: BaseException, sequence: int) -> None:
        report = self._reports[action_id]
        message = _describe(error)
        temporary = isinstance(error, TemporaryError)
        if not isinstance(error, DriverError):
            log.error(
                "action %s raised an unexpected error:\n%s", action_id, "".join(traceback.format_exception(error))
            )
        report.error = message
        if temporary and report.attempts < self.retry.attempts and not self.stop.is_set():
            suggested = error.delay if isinstance(error, TemporaryError) else None
            delay = self.retry.delay(report.attempts, suggested, self.rng)
            report.state = Outcome.PENDING
            heapq.heappush(self._waiting, (self.clock() + delay, sequence, action_id))
            self._change(
                Change(report.action, Outcome.PENDING, attempts=report.attempts, error=message, retry_in=delay)
            )
            return
        if temporary and report.attempts >= self.retry.attempts:
            message = f"{message} (gave up after {report.attempts} attempts)"
        report.state = Outcome.FAILED
        report.error = message
        report.finished = self.clock()
        self._change(Change(report.action, Outcome.FAILED, attempts=report.attempts, error=message))
        self._skip_descendants(action_id)

    def _skip_descendants(self, failed: str) -> None:
        stack = list(self._successors[failed])
        while stack:
            action_id = stack.pop()
            report = self._reports[action_id]
            if report.state is not Outcome.PENDING:
                continue
            report.state = Outcome.SKIPPED
            report.blocked_by = failed
            self._change(Change(report.action, Outcome.SKIPPED, blocked_by=failed))
            stack.extend(self._successors[action_id])

    def _expire_deadlines(self, ready: deque[str]) -> None:
        now = self.clock()
        for action_id, attempt in list(self._running.items()):
            if now < attempt.deadline:
                continue
            attempt.context.cancelled.set()
            del self._running[action_id]
            timeout = self.timeout_for(attempt.action)
            error = DriverTimeoutError(f"did not finish within {timeout:g}s and was cancelled")
            self._failed_attempt(action_id, error, sequence=0)

    def _abandon_running(self) -> None:
        for action_id, attempt in list(self._running.items()):
            attempt.context.cancelled.set()
            report = self._reports[action_id]
            report.state = Outcome.CANCELLED
            report.error = "cancelled while running (a second interrupt)"
            self._change(Change(report.action, Outcome.CANCELLED, attempts=report.attempts, error=report.error))
        self._running.clear()

    def _finish_unreached(self) -> None:
        """Actions never started because of a stop: cancelled, so the journal says why they did not run."""
        for report in self._reports.values():
            if report.state in (Outcome.PENDING, Outcome.QUEUED):
                report.state = Outcome.CANCELLED
                report.error = report.error or "not started: the apply was interrupted"
                self._change(Change(report.action, Outcome.CANCELLED, attempts=report.attempts, error=report.error))

    # --- the journal ----------------------------------------------------------------------------------------

    def _change(self, change: Change) -> None:
        self._pending_changes.append(change)

    def _flush(self) -> None:
        if not self._pending_changes:
            return
        changes, self._pending_changes = self._pending_changes, []
        started = time.perf_counter()
        self.journal.record(changes)
        self._journalled_at = time.perf_counter()
        self.batching.journalled(self._journalled_at - started)
        if self.on_change is not None:
            self.on_change(changes)


class _Workers:
    """The threads that run attempts, reused from one attempt to the next.

    Starting a thread per attempt makes the scheduler wait, at each launch, until the new thread has been
    scheduled (up to a GIL switch interval while other threads run): that was most of the controller's overhead
    per action. A worker still busy with an abandoned (timed out or cancelled) attempt is simply not idle, so a
    hanging driver never holds up a launch: a new worker is started whenever none is idle.
    """

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[Callable[[], None] | None]] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, work: Callable[[], None], *, name: str) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name=name, daemon=True).start()
        inbox.put(work)

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        while True:
            work = inbox.get()
            if work is None:
                return
            work()
            with self._lock:
                if self._closed:
                    return  # the run is over (this was a late, abandoned attempt): nothing will come
                self._idle.append(inbox)

    def close(self) -> None:
        """Let every worker end: idle ones now, busy ones when their attempt returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for inbox in idle:
            inbox.put(None)


def _describe(error: BaseException) -> str:
    if isinstance(error, DriverError):
        kind = "temporary" if error.temporary else "permanent"
        return f"{type(error).__name__} ({kind}): {error}"
    return f"internal error: {type(error).__name__}: {error}"
