"""The executor's journal: each state change is journalled before anything depends on it, and the changes of
one scheduling round reach the journal in one ``record`` call (one transaction for a durable journal).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from nebctl.controller.applying.executing import Change, Executor, Outcome

from .plans import Recorder, Scripted, plan_of


def test_running_is_journalled_before_the_runner_is_called_and_success_before_dependents_start() -> None:
    journal = Recorder()
    problems: list[str] = []

    def check(action_id: str, parent: str | None) -> Any:
        def behaviour(attempt: int) -> Mapping[str, Any]:
            if [c.attempts for c in journal.of(action_id, Outcome.RUNNING)] != [attempt]:
                problems.append(f"{action_id} ran before its RUNNING was journalled")
            if parent is not None and not journal.of(parent, Outcome.SUCCEEDED):
                problems.append(f"{action_id} ran before {parent}'s success was journalled")
            return {}

        return behaviour

    runner = Scripted({"a": check("a", None), "b": check("b", "a"), "c": check("c", "b")})
    report = Executor(plan_of(["a", "b", "c"], [("a", "b"), ("b", "c")]), runner, journal=journal).run()
    assert report.ok
    assert problems == []


def test_a_round_of_launches_is_one_journal_call() -> None:
    ids = [f"a{i}" for i in range(10)]
    barrier = threading.Barrier(10, timeout=10)

    def meet(attempt: int) -> Mapping[str, Any]:
        barrier.wait()
        return {}

    journal = Recorder()
    report = Executor(plan_of(ids), Scripted(dict.fromkeys(ids, meet)), journal=journal, parallelism=10).run()
    assert report.ok
    first = journal.rounds[0]
    assert [c.state for c in first] == [Outcome.RUNNING] * 10
    assert sorted(c.action.id for c in first) == ids
    # 20 changes (10 RUNNING, 10 SUCCEEDED) in fewer calls than changes: completions are batched too, as far
    # as they arrive together; at most one call per completion plus the launch round.
    assert len(journal.changes) == 20
    assert len(journal.rounds) <= 11


def test_on_change_sees_each_round_after_the_journal_has_it() -> None:
    log: list[tuple[str, list[Change]]] = []

    class Journal:
        def record(self, changes: Sequence[Change]) -> None:
            log.append(("journal", list(changes)))

    def on_change(changes: Sequence[Change]) -> None:
        log.append(("progress", list(changes)))

    Executor(plan_of(["a", "b"], [("a", "b")]), Scripted(), journal=Journal(), on_change=on_change).run()
    assert [what for what, _ in log] == ["journal", "progress"] * (len(log) // 2)
    for (_, journalled), (_, shown) in zip(log[::2], log[1::2], strict=True):
        assert journalled == shown


def test_a_successful_result_is_journalled_with_the_attempt_count() -> None:
    journal = Recorder()
    Executor(plan_of(["a"]), Scripted({"a": lambda attempt: {"uuid": "u-1"}}), journal=journal).run()
    (done,) = journal.of("a", Outcome.SUCCEEDED)
    assert done.result == {"uuid": "u-1"}
    assert done.attempts == 1


def test_progress_reported_by_a_running_attempt_is_journalled_as_its_result() -> None:
    """A download reports its bytes through the call context; the journal gets them as the running action's
    result (what the API and the CLI's bars read), and the final result replaces them."""
    from nebctl.drivers.context import current

    seen_by_journal = threading.Event()
    journal = Recorder()

    class Watching(Recorder):
        def record(self, changes: Sequence[Change]) -> None:
            journal.record(changes)
            if any(c.state is Outcome.RUNNING and c.result for c in changes):
                seen_by_journal.set()

    def download(attempt: int) -> Mapping[str, Any]:
        report = current().progress
        assert report is not None
        report({"bytes": 10, "total": 100})
        report({"bytes": 60, "total": 100})  # only the latest of a round is journalled
        seen_by_journal.wait(10)
        return {"size": 100}

    report = Executor(plan_of(["img"]), Scripted({"img": download}), journal=Watching()).run()
    assert report.ok
    changes = [c for c in journal.changes if c.action.id == "img"]
    states = [(c.state, dict(c.result) if c.result is not None else None) for c in changes]
    assert states[0] == (Outcome.RUNNING, None)
    assert (Outcome.RUNNING, {"progress": {"bytes": 60, "total": 100}}) in states
    assert states[-1] == (Outcome.SUCCEEDED, {"size": 100})
