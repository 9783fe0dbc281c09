"""Queued actions: a round journals the starts of a few ready actions beyond the free slots, so that a slot freed
by an outcome is filled at once, before the round that journals that outcome. Every action still runs only after
its start is durable; a queued action that never ran is cancelled; a saturated process queues nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from nebctl.controller.applying import executing
from nebctl.controller.applying.batching import Batching
from nebctl.controller.applying.executing import Change, Executor, Outcome

from .plans import Recorder, Scripted, blocks, plan_of


class _OutcomeRoundWaits(Recorder):
    """A journal that, in the round carrying ``outcome``'s success, waits (up to ``limit`` seconds) for
    ``starter`` to be called, and notes whether it was called within that round."""

    def __init__(self, outcome: str, starter: threading.Event, limit: float) -> None:
        super().__init__()
        self.outcome, self.starter, self.limit = outcome, starter, limit
        self.started_within_the_round: bool | None = None

    def record(self, changes: Sequence[Change]) -> None:
        if any(c.action.id == self.outcome and c.state is Outcome.SUCCEEDED for c in changes):
            self.started_within_the_round = self.starter.wait(self.limit)
        super().record(changes)


def _three_actions_two_slots(limit: float) -> tuple[Executor, _OutcomeRoundWaits]:
    """a and b run, c waits for a slot: a ends once the first round is journalled, b once c has started."""
    c_started = threading.Event()

    def c(attempt: int) -> Mapping[str, Any]:
        c_started.set()
        return {}

    gate = threading.Event()
    a_may_end = threading.Event()
    runner = Scripted({"a": blocks(a_may_end), "b": blocks(gate), "c": c})
    journal = _OutcomeRoundWaits("a", c_started, limit)
    executor = Executor(plan_of(["a", "b", "c"]), runner, journal=journal, parallelism=2)
    original = journal.record

    def record(changes: Sequence[Change]) -> None:
        original(changes)
        if len(journal.rounds) == 1:
            a_may_end.set()
        if c_started.is_set():
            gate.set()

    journal.record = record  # type: ignore[method-assign]
    return executor, journal


def test_a_queued_action_starts_before_the_round_that_journals_the_outcome_that_freed_its_slot() -> None:
    executor, journal = _three_actions_two_slots(limit=5.0)
    report = executor.run()
    assert report.ok
    first = journal.rounds[0]
    assert {(c.action.id, c.state) for c in first} == {
        ("a", Outcome.RUNNING),
        ("b", Outcome.RUNNING),
        ("c", Outcome.QUEUED),
    }
    # c ran while the round with a's outcome was being journalled: it did not wait for it.
    assert journal.started_within_the_round is True
    assert journal.states("c") == [Outcome.QUEUED, Outcome.RUNNING, Outcome.SUCCEEDED]
    assert report.reports["c"].attempts == 1
    # The round that journals a's outcome records c as running, with the attempt its queued start announced.
    (outcome_round,) = [r for r in journal.rounds if ("a", Outcome.SUCCEEDED) in {(c.action.id, c.state) for c in r}]
    assert any(c.action.id == "c" and c.state is Outcome.RUNNING and c.attempts == 1 for c in outcome_round)


def test_a_queued_action_waits_for_the_next_round_when_the_last_one_is_old(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executing, "QUEUED_FRESH", 0.0)  # every round is already too old to start from
    executor, journal = _three_actions_two_slots(limit=0.3)
    report = executor.run()
    assert report.ok
    assert journal.started_within_the_round is False
    assert journal.states("c") == [Outcome.QUEUED, Outcome.RUNNING, Outcome.SUCCEEDED]


def test_every_attempt_runs_only_after_its_start_is_journalled() -> None:
    ids = [f"a{i:02d}" for i in range(60)]
    journal = Recorder()
    problems: list[str] = []
    pause = threading.Event()

    def check(action_id: str) -> Any:
        def behaviour(attempt: int) -> Mapping[str, Any]:
            starts = [
                c for c in journal.changes if c.action.id == action_id and c.state in (Outcome.QUEUED, Outcome.RUNNING)
            ]
            if attempt not in {c.attempts for c in starts}:
                problems.append(f"{action_id} attempt {attempt} ran before its start was journalled")
            pause.wait(0.002 * (int(action_id[1:]) % 4))
            return {}

        return behaviour

    report = Executor(plan_of(ids), Scripted({i: check(i) for i in ids}), journal=journal, parallelism=8).run()
    assert report.ok
    assert problems == []
    assert any(journal.of(i, Outcome.QUEUED) for i in ids)  # the fast path was taken
    for action_id in ids:
        states = journal.states(action_id)
        assert states[-2:] == [Outcome.RUNNING, Outcome.SUCCEEDED], (action_id, states)
        assert set(states) <= {Outcome.QUEUED, Outcome.RUNNING, Outcome.SUCCEEDED}


class _Saturated(Batching):
    """The process counts as saturated from the start (the batching's own measure is about CPU time)."""

    @property
    def saturated(self) -> bool:
        return True

    def linger(self) -> float:
        return 0.0


def test_a_saturated_process_queues_nothing() -> None:
    ids = [f"a{i}" for i in range(30)]
    journal = Recorder()
    report = Executor(plan_of(ids), Scripted(), journal=journal, parallelism=4, batching=_Saturated()).run()
    assert report.ok
    assert not [c for c in journal.changes if c.state is Outcome.QUEUED]
    assert all(journal.states(i) == [Outcome.RUNNING, Outcome.SUCCEEDED] for i in ids)


def test_at_most_a_quarter_of_the_parallelism_is_queued() -> None:
    ids = [f"a{i:02d}" for i in range(40)]
    journal = Recorder()
    report = Executor(plan_of(ids), Scripted(), journal=journal, parallelism=8).run()
    assert report.ok
    first = [c.state for c in journal.rounds[0]]
    assert (first.count(Outcome.RUNNING), first.count(Outcome.QUEUED), len(first)) == (8, 2, 10)
