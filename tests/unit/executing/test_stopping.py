"""Stop and cancel: ``stop`` (the first Ctrl-C) starts nothing new and lets running actions finish; ``cancel``
(the second) abandons the running ones too. Either way every action ends in a final state in the journal.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from nebctl.controller.applying.executing import Change, Executor, Outcome
from nebctl.core.settings import RetryPolicy
from nebctl.drivers.context import current
from nebctl.drivers.errors import TemporaryError

from .plans import Recorder, Scripted, blocks, fail_times, hangs, plan_of, wait_for

FINAL = {Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SKIPPED, Outcome.CANCELLED}


def _run_in_thread(executor: Executor) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(executor.run()), daemon=True)
    thread.start()
    return thread, out


def test_stop_starts_nothing_new_and_lets_the_running_actions_finish() -> None:
    gate = threading.Event()
    started = {name: threading.Event() for name in ("a", "b")}
    runner = Scripted({name: blocks(gate, started=started[name]) for name in ("a", "b")})
    journal = Recorder()
    stop = threading.Event()
    ids = ["a", "b", "c", "d", "a2"]
    executor = Executor(plan_of(ids, [("a", "a2"), ("c", "d")]), runner, journal=journal, parallelism=2, stop=stop)
    thread, out = _run_in_thread(executor)
    assert started["a"].wait(5) and started["b"].wait(5)
    stop.set()
    gate.set()  # the running ones may now finish, after the stop
    thread.join(10)
    report = out[0]
    assert report.interrupted
    assert report.reports["a"].state is Outcome.SUCCEEDED
    assert report.reports["b"].state is Outcome.SUCCEEDED
    assert report.reports["a"].result == {"released": True}  # it finished its work, it was not cancelled
    for never in ("c", "d", "a2"):
        assert never not in runner.calls
        assert report.reports[never].state is Outcome.CANCELLED
        assert "interrupted" in (report.reports[never].error or "")
    # c was queued behind the two running ones (its start journalled ahead); it never ran, and says so.
    assert journal.states("c") == [Outcome.QUEUED, Outcome.CANCELLED]
    assert journal.states("d") == journal.states("a2") == [Outcome.CANCELLED]
    assert runner.cancel_seen["a"] == [False]


def test_stop_during_a_backoff_cancels_the_retry() -> None:
    stop = threading.Event()

    def stop_on_retry(changes: Sequence[Change]) -> None:
        if any(change.retry_in is not None for change in changes):
            stop.set()

    runner = Scripted({"a": fail_times(lambda: TemporaryError("busy", delay=30.0), 1)})
    journal = Recorder()
    report = Executor(
        plan_of(["a"]),
        runner,
        journal=journal,
        retry=RetryPolicy(max_delay=60.0),
        stop=stop,
        on_change=stop_on_retry,
    ).run()
    assert runner.calls["a"] == 1  # not retried after the stop
    assert report.reports["a"].state is Outcome.CANCELLED
    assert journal.states("a")[-1] is Outcome.CANCELLED
    assert report.interrupted


def test_a_temporary_failure_after_a_stop_is_not_retried() -> None:
    gate = threading.Event()
    entered = threading.Event()

    def fails_when_released(attempt: int) -> Mapping[str, Any]:
        entered.set()
        gate.wait(5)
        raise TemporaryError("flaky")

    stop = threading.Event()
    runner = Scripted({"a": fails_when_released})
    executor = Executor(plan_of(["a"]), runner, journal=Recorder(), stop=stop, retry=RetryPolicy(initial_delay=0))
    thread, out = _run_in_thread(executor)
    assert entered.wait(5)
    stop.set()
    gate.set()
    thread.join(10)
    assert runner.calls["a"] == 1
    assert out[0].reports["a"].state in (Outcome.FAILED, Outcome.CANCELLED)
    assert out[0].interrupted


def test_cancel_abandons_running_actions_and_sets_their_cancel_flag() -> None:
    entered = threading.Event()
    runner = Scripted({"a": hangs(entered)})
    journal = Recorder()
    stop, cancel = threading.Event(), threading.Event()
    executor = Executor(
        plan_of(["a", "b", "c"], [("a", "c")]), runner, journal=journal, parallelism=1, stop=stop, cancel=cancel
    )
    thread, out = _run_in_thread(executor)
    assert entered.wait(5)
    stop.set()
    cancel.set()
    thread.join(10)
    assert not thread.is_alive()
    report = out[0]
    assert report.interrupted
    assert report.reports["a"].state is Outcome.CANCELLED
    assert "cancelled while running" in (report.reports["a"].error or "")
    assert journal.states("a") == [Outcome.RUNNING, Outcome.CANCELLED]
    for never in ("b", "c"):
        assert report.reports[never].state is Outcome.CANCELLED
        assert never not in runner.calls
    # The runner saw its cancel flag and returned.
    wait_for(lambda: bool(runner.cancel_seen["a"]))
    assert runner.cancel_seen["a"] == [True]


def test_every_action_ends_in_a_final_state_in_the_journal_whatever_happens() -> None:
    entered = threading.Event()
    runner = Scripted({"x": hangs(entered), "bad": fail_times(lambda: TemporaryError("no"), 99)})
    journal = Recorder()
    cancel = threading.Event()
    ids = ["x", "bad", "after-bad", "y", "z"]
    executor = Executor(
        plan_of(ids, [("bad", "after-bad"), ("y", "z")]),
        runner,
        journal=journal,
        parallelism=2,
        cancel=cancel,
        retry=RetryPolicy(attempts=2, initial_delay=0.001),
    )
    thread, out = _run_in_thread(executor)
    assert entered.wait(5)
    wait_for(lambda: bool(out or journal.of("bad", Outcome.FAILED)))
    cancel.set()
    thread.join(10)
    last = {c.action.id: c.state for c in journal.changes}
    assert set(last) == set(ids)
    assert all(state in FINAL for state in last.values()), last
    assert {r.state for r in out[0].reports.values()} <= FINAL


def test_a_cancel_from_a_signal_handler_that_outlasts_the_schedulers_wait_is_seen() -> None:
    # Ctrl-C's handler runs in the main thread, which is the scheduler's, in the middle of its wait for an
    # outcome. A handler that returns after that wait's timeout once left the scheduler blocked until some
    # attempt finished (CPython's SimpleQueue.get then waits with no timeout at all): here, until the hanging
    # action gave up by itself after 3 s, and the cancel was never seen.
    assert threading.current_thread() is threading.main_thread()  # signal handlers only run there
    entered = threading.Event()

    def gives_up_after_3s(attempt: int) -> Mapping[str, Any]:
        entered.set()
        current().cancelled.wait(3)
        return {"late": True}

    runner = Scripted({"a": gives_up_after_3s})
    cancel = threading.Event()

    def slow_handler(signum: int, frame: FrameType | None) -> None:
        time.sleep(0.5)  # longer than any of the scheduler's waits (0.2 s at most)
        cancel.set()

    previous = signal.signal(signal.SIGUSR1, slow_handler)
    try:
        executor = Executor(plan_of(["a"]), runner, journal=Recorder(), cancel=cancel)
        threading.Thread(target=_signal_once_entered, args=(entered,), daemon=True).start()
        report = executor.run()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert report.interrupted
    assert report.reports["a"].state is Outcome.CANCELLED, report.reports["a"]
    assert "cancelled while running" in (report.reports["a"].error or "")


def _signal_once_entered(entered: threading.Event) -> None:
    if entered.wait(5):
        time.sleep(0.05)  # the scheduler is back in its wait for an outcome
        os.kill(os.getpid(), signal.SIGUSR1)
