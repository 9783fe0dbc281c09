"""The executor's scheduling: the parallelism bound, dependency order, and how a failure spreads (only down).

Runners are plain Python callables (``plans.Scripted``); what is asserted is the executor's behaviour: who ran,
when relative to whom, and what the report and the journal say.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from nebctl.controller.applying.executing import Executor, Outcome
from nebctl.core.settings import RetryPolicy
from nebctl.drivers.errors import PermanentError

from .plans import Recorder, Scripted, blocks, plan_of, position


@pytest.mark.parametrize("parallelism", [1, 3, 8])
def test_no_more_actions_run_at_once_than_the_parallelism(parallelism: int) -> None:
    ids = [f"a{i}" for i in range(24)]
    # Each call waits until `parallelism` calls are in flight together: the bound is reached (the barrier
    # trips) and, if the executor ever started more, max_running would exceed it.
    barrier = threading.Barrier(parallelism, timeout=10)

    def meet(attempt: int) -> Mapping[str, Any]:
        barrier.wait()
        return {}

    runner = Scripted(dict.fromkeys(ids, meet))
    report = Executor(plan_of(ids), runner, journal=Recorder(), parallelism=parallelism).run()
    assert report.ok
    assert runner.max_running == parallelism
    assert sum(runner.calls.values()) == len(ids)


def test_an_action_starts_only_after_all_its_dependencies_succeeded() -> None:
    ids = ["net", "img", "disk", "nic", "vm", "post", "other"]
    edges = [("img", "disk"), ("net", "nic"), ("disk", "vm"), ("nic", "vm"), ("vm", "post")]
    runner = Scripted()
    report = Executor(plan_of(ids, edges), runner, journal=Recorder(), parallelism=16).run()
    assert report.ok
    for before, after in edges:
        assert position(runner.events, "end", before) < position(runner.events, "start", after), (before, after)
    assert all(count == 1 for count in runner.calls.values())
    assert report.reports["post"].result == {"done": "post"}


def test_a_ready_action_does_not_wait_for_an_unrelated_slow_one() -> None:
    gate = threading.Event()
    # "slow" holds its slot until "b" (which depends on "a" only) has run: if the executor waited for rounds
    # to drain, "b" would never start and "slow" would never be released.
    runner = Scripted({"slow": blocks(gate)})
    original = runner.behaviours

    def b(attempt: int) -> Mapping[str, Any]:
        gate.set()
        return {}

    original["b"] = b
    report = Executor(plan_of(["slow", "a", "b"], [("a", "b")]), runner, journal=Recorder(), parallelism=4).run()
    assert report.ok
    assert report.reports["slow"].result == {"released": True}
    assert position(runner.events, "start", "b") < position(runner.events, "end", "slow")


def _refuse(attempt: int) -> Mapping[str, Any]:
    raise PermanentError("no such template", driver="unit")


def test_a_failure_skips_its_descendants_and_independent_branches_go_on() -> None:
    ids = ["a", "b", "c", "d", "e", "f", "g", "joined"]
    edges = [("a", "b"), ("b", "c"), ("a", "d"), ("e", "f"), ("f", "g"), ("g", "joined"), ("d", "joined")]
    runner = Scripted({"a": _refuse})
    journal = Recorder()
    report = Executor(plan_of(ids, edges), runner, journal=journal, parallelism=2).run()

    states = {action_id: r.state for action_id, r in report.reports.items()}
    assert states == {
        "a": Outcome.FAILED,
        "b": Outcome.SKIPPED,
        "c": Outcome.SKIPPED,
        "d": Outcome.SKIPPED,
        "e": Outcome.SUCCEEDED,
        "f": Outcome.SUCCEEDED,
        "g": Outcome.SUCCEEDED,
        "joined": Outcome.SKIPPED,  # one of its two parents was blocked
    }
    for skipped in ("b", "c", "d", "joined"):
        assert report.reports[skipped].blocked_by == "a"
        assert skipped not in runner.calls
        assert [c.blocked_by for c in journal.of(skipped, Outcome.SKIPPED)] == ["a"]
    assert "no such template" in (report.reports["a"].error or "")
    assert "permanent" in (report.reports["a"].error or "")
    assert not report.ok and not report.interrupted


def test_a_failure_in_one_parent_of_a_diamond_blocks_the_join_once() -> None:
    runner = Scripted({"left": _refuse})
    journal = Recorder()
    edges = [("root", "left"), ("root", "right"), ("left", "join"), ("right", "join")]
    report = Executor(plan_of(["root", "left", "right", "join"], edges), runner, journal=journal).run()
    assert report.reports["right"].state is Outcome.SUCCEEDED
    assert report.reports["join"].state is Outcome.SKIPPED
    assert report.reports["join"].blocked_by == "left"
    assert journal.states("join") == [Outcome.SKIPPED]


def test_an_unexpected_exception_in_a_runner_fails_the_action_at_once() -> None:
    def broken(attempt: int) -> Mapping[str, Any]:
        raise KeyError("bug")

    runner = Scripted({"a": broken})
    report = Executor(plan_of(["a", "b"], [("a", "b")]), runner, journal=Recorder()).run()
    assert runner.calls["a"] == 1  # a bug is not retried as if it were a flaky host
    assert report.reports["a"].state is Outcome.FAILED
    assert (report.reports["a"].error or "").startswith("internal error: KeyError")
    assert report.reports["b"].state is Outcome.SKIPPED


def test_an_empty_plan_is_done_at_once() -> None:
    journal = Recorder()
    report = Executor(plan_of([]), Scripted(), journal=journal).run()
    assert report.ok and not report.interrupted
    assert journal.rounds == []


def test_worker_threads_are_reused_between_attempts() -> None:
    ids = [f"a{i}" for i in range(20)]
    threads: set[int] = set()

    def note(attempt: int) -> Mapping[str, Any]:
        threads.add(threading.get_ident())
        return {}

    chain = list(itertools.pairwise(ids))
    report = Executor(plan_of(ids, chain), Scripted(dict.fromkeys(ids, note)), journal=Recorder()).run()
    assert report.ok
    # One action at a time: a new thread per attempt would show 20 idents; reuse keeps it to very few (a
    # worker may not be back in the idle list yet when the next action is launched).
    assert len(threads) <= 3


def test_a_worker_stuck_in_an_abandoned_attempt_does_not_hold_up_the_next_launch() -> None:
    gate = threading.Event()  # a driver that ignores its cancel flag: only the test can release it

    def stuck(attempt: int) -> Mapping[str, Any]:
        gate.wait(30)
        return {}

    runner = Scripted({"a": stuck})
    try:
        report = Executor(
            plan_of(["a", "b"]),
            runner,
            journal=Recorder(),
            parallelism=1,
            retry=RetryPolicy(attempts=1),
            timeout_for=lambda action: 0.05,
        ).run()
    finally:
        gate.set()
    assert report.reports["a"].state is Outcome.FAILED
    assert report.reports["b"].state is Outcome.SUCCEEDED
