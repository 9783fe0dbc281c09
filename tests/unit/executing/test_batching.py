"""Group commit in the executor: while the process is saturated, the scheduler waits a little for more outcomes,
so that one journal round carries several; otherwise it journals each outcome as soon as it arrives.

``Batching`` is driven here by hand-set clocks (how busy the process was is its input); the executor's side is
run with a real runner whose outcomes arrive at chosen moments.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from nebctl.controller.applying.batching import Batching
from nebctl.controller.applying.executing import Executor, Outcome

from .plans import Recorder, Scripted, plan_of


class Clocks:
    """Wall and CPU time, moved by the test."""

    def __init__(self) -> None:
        self.wall_now = 100.0
        self.cpu_now = 10.0

    def wall(self) -> float:
        return self.wall_now

    def cpu(self) -> float:
        return self.cpu_now

    def spend(self, wall: float, cpus: float) -> None:
        """Let ``wall`` seconds pass, during which the process kept ``cpus`` CPUs busy."""
        self.wall_now += wall
        self.cpu_now += wall * cpus


def batching(clocks: Clocks) -> Batching:
    return Batching(cpu=clocks.cpu, wall=clocks.wall, window=0.05, busy=0.9, cap=0.005)


def rounds(subject: Batching, clocks: Clocks, count: int, *, cpus: float, cost: float = 0.001) -> None:
    """``count`` rounds 10 ms apart, each journalled in ``cost`` seconds, the process keeping ``cpus`` CPUs busy."""
    for _ in range(count):
        clocks.spend(0.01, cpus=cpus)
        subject.journalled(cost)


def test_an_idle_process_never_waits_for_more_outcomes() -> None:
    clocks = Clocks()
    subject = batching(clocks)
    assert subject.linger() == 0.0  # nothing measured yet
    rounds(subject, clocks, 10, cpus=0.3)  # actions waiting on the world: the interpreter is mostly idle
    assert not subject.saturated
    assert subject.linger() == 0.0


def test_a_saturated_process_waits_about_a_rounds_cost_and_never_more_than_the_cap() -> None:
    clocks = Clocks()
    subject = batching(clocks)
    rounds(subject, clocks, 6, cpus=1.0)
    assert subject.saturated
    assert abs(subject.linger() - 0.001) < 1e-9
    rounds(subject, clocks, 40, cpus=1.0, cost=0.05)  # rounds grow expensive: the wait follows, up to the cap
    assert subject.linger() == 0.005


def test_the_wait_stops_once_the_process_is_idle_again() -> None:
    clocks = Clocks()
    subject = batching(clocks)
    rounds(subject, clocks, 6, cpus=1.2)
    assert subject.linger() > 0.0
    rounds(subject, clocks, 6, cpus=0.2)
    assert subject.linger() == 0.0


def test_busy_time_is_judged_per_window_not_per_round() -> None:
    clocks = Clocks()
    subject = batching(clocks)
    clocks.spend(0.04, cpus=1.0)
    subject.journalled(0.001)
    assert not subject.saturated  # less than a window has passed: no verdict yet
    clocks.spend(0.02, cpus=1.0)
    subject.journalled(0.001)
    assert subject.saturated


class Lingering(Batching):
    """A batching that always finds the process saturated and waits ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def linger(self) -> float:
        return self.seconds


def staggered(ids: list[str], gap: float) -> Scripted:
    """Each action waits until all have started, then ends ``gap`` seconds after the one before it."""
    started = threading.Barrier(len(ids), timeout=10)

    def behaviour(index: int) -> Any:
        def run(attempt: int) -> Mapping[str, Any]:
            started.wait()
            time.sleep(index * gap)
            return {}

        return run

    return Scripted({action_id: behaviour(index) for index, action_id in enumerate(ids)})


def outcome_rounds(journal: Recorder) -> list[int]:
    """How many successes each round carried, for the rounds that carried some."""
    counts = [sum(1 for change in round_ if change.state is Outcome.SUCCEEDED) for round_ in journal.rounds]
    return [count for count in counts if count]


def test_while_saturated_the_outcomes_that_arrive_within_the_wait_share_one_round() -> None:
    ids = [f"a{i}" for i in range(6)]
    journal = Recorder()
    report = Executor(plan_of(ids), staggered(ids, 0.02), journal=journal, parallelism=6, batching=Lingering(2.0)).run()
    assert report.ok
    assert outcome_rounds(journal) == [6]


def test_without_saturation_each_outcome_is_journalled_as_it_arrives() -> None:
    ids = [f"a{i}" for i in range(6)]
    journal = Recorder()
    report = Executor(plan_of(ids), staggered(ids, 0.05), journal=journal, parallelism=6, batching=Lingering(0.0)).run()
    assert report.ok
    assert outcome_rounds(journal) == [1] * 6


def test_the_wait_ends_as_soon_as_every_running_attempt_has_answered() -> None:
    ids = [f"a{i}" for i in range(4)]
    started = time.monotonic()
    report = Executor(plan_of(ids), Scripted(), journal=Recorder(), parallelism=4, batching=Lingering(30.0)).run()
    assert report.ok
    assert time.monotonic() - started < 10.0  # a wait of its whole 30 s would fail this


def test_the_journal_promise_holds_while_waiting() -> None:
    journal = Recorder()
    problems: list[str] = []

    def check(action_id: str, parent: str | None) -> Any:
        def behaviour(attempt: int) -> Mapping[str, Any]:
            if not journal.of(action_id, Outcome.RUNNING):
                problems.append(f"{action_id} ran before its RUNNING was journalled")
            if parent is not None and not journal.of(parent, Outcome.SUCCEEDED):
                problems.append(f"{action_id} ran before {parent}'s success was journalled")
            return {}

        return behaviour

    runner = Scripted({"a": check("a", None), "b": check("b", "a"), "c": check("c", "b"), "x": check("x", None)})
    plan = plan_of(["a", "b", "c", "x"], [("a", "b"), ("b", "c")])
    report = Executor(plan, runner, journal=journal, batching=Lingering(0.05)).run()
    assert report.ok
    assert problems == []
