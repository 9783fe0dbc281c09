"""Retries and timeouts: temporary errors are retried with exponential backoff and jitter (a driver's
suggested delay wins, everything capped by ``max_delay``), permanent ones fail at once, and an attempt that
outlives its timeout is abandoned (cancel flag set) and counted as a temporary failure.

Delays are asserted through the journal's ``retry_in`` (what the executor decided), never by timing the run.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from nebctl.controller.applying.executing import Executor, Outcome
from nebctl.core.plans import Action
from nebctl.core.settings import RetryPolicy
from nebctl.drivers.errors import DriverTimeoutError, PermanentError, TemporaryError

from .plans import Recorder, Scripted, fail_times, hangs, plan_of, wait_for

FAST = RetryPolicy(attempts=4, initial_delay=0.001, max_delay=0.01, multiplier=2.0, jitter=0.2)


def _temporary() -> BaseException:
    return TemporaryError("host busy", driver="unit")


def test_a_temporary_error_is_retried_until_it_succeeds() -> None:
    runner = Scripted({"a": fail_times(_temporary, 2)})
    journal = Recorder()
    report = Executor(plan_of(["a", "b"], [("a", "b")]), runner, journal=journal, retry=FAST).run()
    assert report.ok
    assert runner.calls["a"] == 3
    assert report.reports["a"].attempts == 3
    assert report.reports["a"].result == {"attempt": 3}
    assert report.reports["a"].error is None  # the earlier failures do not stick to a success
    assert journal.states("a") == [
        Outcome.RUNNING,
        Outcome.PENDING,
        Outcome.RUNNING,
        Outcome.PENDING,
        Outcome.RUNNING,
        Outcome.SUCCEEDED,
    ]
    assert [c.attempts for c in journal.of("a", Outcome.RUNNING)] == [1, 2, 3]
    assert all("host busy" in (c.error or "") for c in journal.of("a", Outcome.PENDING))
    assert runner.calls["b"] == 1


def test_a_temporary_error_gives_up_after_the_attempt_limit() -> None:
    runner = Scripted({"a": fail_times(_temporary, 99)})
    report = Executor(plan_of(["a", "b"], [("a", "b")]), runner, journal=Recorder(), retry=FAST).run()
    assert runner.calls["a"] == FAST.attempts
    assert report.reports["a"].state is Outcome.FAILED
    assert "gave up after 4 attempts" in (report.reports["a"].error or "")
    assert report.reports["b"].state is Outcome.SKIPPED


def test_a_permanent_error_fails_at_once() -> None:
    runner = Scripted({"a": fail_times(lambda: PermanentError("bad image", driver="unit"), 99)})
    journal = Recorder()
    report = Executor(plan_of(["a"]), runner, journal=journal, retry=FAST).run()
    assert runner.calls["a"] == 1
    assert journal.states("a") == [Outcome.RUNNING, Outcome.FAILED]
    assert "gave up" not in (report.reports["a"].error or "")


def test_backoff_delays_come_from_the_seeded_rng_and_grow() -> None:
    policy = RetryPolicy(attempts=6, initial_delay=0.001, max_delay=1.0, multiplier=3.0, jitter=0.25)
    runner = Scripted({"a": fail_times(_temporary, 5)})
    journal = Recorder()
    Executor(plan_of(["a"]), runner, journal=journal, retry=policy, rng=random.Random(7)).run()
    delays = [c.retry_in for c in journal.of("a", Outcome.PENDING)]
    expected_rng = random.Random(7)
    assert delays == [policy.delay(n, None, expected_rng) for n in range(1, 6)]
    for n, delay in enumerate(delays, start=1):
        base = 0.001 * 3.0 ** (n - 1)
        assert base * 0.75 <= (delay or 0) <= base * 1.25


def test_backoff_without_jitter_is_exactly_exponential_and_capped() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=3.0, multiplier=2.0, jitter=0.0)
    rng = random.Random(0)
    assert [policy.delay(n, None, rng) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


@pytest.mark.parametrize("seed", range(20))
def test_a_jittered_delay_never_exceeds_max_delay(seed: int) -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=4.0, multiplier=2.0, jitter=0.5)
    rng = random.Random(seed)
    delays = [policy.delay(n, None, rng) for n in range(1, 12)]
    assert all(0 <= d <= policy.max_delay for d in delays), delays


def test_a_driver_suggested_delay_is_honoured_and_capped() -> None:
    policy = RetryPolicy(attempts=3, initial_delay=5.0, max_delay=0.03, jitter=0.0)
    errors = iter([TemporaryError("busy", delay=0.02), TemporaryError("busy", delay=60.0)])
    runner = Scripted({"a": fail_times(lambda: next(errors), 2)})
    journal = Recorder()
    report = Executor(plan_of(["a"]), runner, journal=journal, retry=policy).run()
    assert report.ok
    assert [c.retry_in for c in journal.of("a", Outcome.PENDING)] == [0.02, 0.03]


def test_a_hanging_attempt_is_abandoned_at_its_timeout_and_retried() -> None:
    entered = threading.Event()
    hang = hangs(entered)

    def first_hangs(attempt: int) -> Mapping[str, Any]:
        if attempt == 1:
            return hang(attempt)
        return {"attempt": attempt}

    runner = Scripted({"a": first_hangs})
    journal = Recorder()
    report = Executor(
        plan_of(["a", "b"], [("a", "b")]), runner, journal=journal, retry=FAST, timeout_for=lambda action: 0.05
    ).run()
    assert entered.is_set()
    assert report.ok
    assert report.reports["a"].attempts == 2
    # The late answer of the abandoned attempt ({"late": True}) must not replace the retry's result.
    assert report.reports["a"].result == {"attempt": 2}
    timed_out = journal.of("a", Outcome.PENDING)
    assert len(timed_out) == 1 and "did not finish within 0.05s" in (timed_out[0].error or "")
    assert "DriverTimeoutError (temporary)" in (timed_out[0].error or "")


def test_an_action_that_always_hangs_fails_as_temporary_after_the_limit_with_its_cancel_flag_set() -> None:
    runner = Scripted({"a": hangs()})
    report = Executor(
        plan_of(["a", "b", "free"], [("a", "b")]),
        runner,
        journal=Recorder(),
        retry=RetryPolicy(attempts=2, initial_delay=0.001, max_delay=0.001),
        timeout_for=lambda action: 0.05 if action.id == "a" else 5.0,
    ).run()
    assert report.reports["a"].state is Outcome.FAILED
    assert "gave up after 2 attempts" in (report.reports["a"].error or "")
    assert report.reports["b"].state is Outcome.SKIPPED
    assert report.reports["free"].state is Outcome.SUCCEEDED
    # Each abandoned attempt saw its cancel flag (the hang returns only once it is set).
    wait_for(lambda: len(runner.cancel_seen["a"]) == 2)
    assert runner.cancel_seen["a"] == [True, True]


def test_the_timeout_is_per_action() -> None:
    seen: list[str] = []

    def timeout_for(action: Action) -> float:
        seen.append(action.id)
        return 1.0

    Executor(plan_of(["a", "b"]), Scripted(), journal=Recorder(), timeout_for=timeout_for).run()
    assert sorted(seen) == ["a", "b"]


def test_a_timeout_error_raised_by_the_driver_itself_is_retried() -> None:
    runner = Scripted({"a": fail_times(lambda: DriverTimeoutError("probe timed out"), 1)})
    report = Executor(plan_of(["a"]), runner, journal=Recorder(), retry=FAST).run()
    assert report.ok and runner.calls["a"] == 2
