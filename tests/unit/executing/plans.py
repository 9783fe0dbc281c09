"""Plain plans and runners for the executor's unit tests: the runner is the executor's input, not its subject.

``plan_of`` builds a ``Plan`` from action ids and edges; ``Recorder`` is a journal that keeps every round it is
handed; ``Scripted`` is a runner whose behaviour per action (succeed, raise, block until released) is set by
the test, and which records how many calls ran at once and the order in which calls started and ended.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nebctl.controller.applying.executing import Change, Outcome
from nebctl.core.families import Family
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Action, Plan
from nebctl.drivers.context import current


def action(action_id: str) -> Action:
    name = action_id.partition(":")[0]
    return Action(
        id=action_id,
        key=ResourceKey.of(Kind.VIRTUAL_MACHINE, name),
        family=Family.VIRTUALIZATION,
        operation="deploy",
        description=f"deploy {action_id}",
    )


def plan_of(ids: Iterable[str], edges: Iterable[tuple[str, str]] = ()) -> Plan:
    return Plan(stack="unit", changes=(), actions=tuple(action(i) for i in ids), edges=tuple(edges), fingerprinted="f")


class Recorder:
    """A journal keeping each round (one ``record`` call) as it was handed over."""

    def __init__(self) -> None:
        self.rounds: list[list[Change]] = []
        self._lock = threading.Lock()

    def record(self, changes: Sequence[Change]) -> None:
        with self._lock:
            self.rounds.append(list(changes))

    @property
    def changes(self) -> list[Change]:
        return [change for round_ in self.rounds for change in round_]

    def states(self, action_id: str) -> list[Outcome]:
        return [change.state for change in self.changes if change.action.id == action_id]

    def of(self, action_id: str, state: Outcome) -> list[Change]:
        return [c for c in self.changes if c.action.id == action_id and c.state is state]


Behaviour = Callable[[int], Mapping[str, Any]]  # called with the attempt number (1-based)


class Scripted:
    """A runner: each action does what ``behaviours`` says (default: succeed with ``{"done": id}``)."""

    def __init__(self, behaviours: Mapping[str, Behaviour] | None = None) -> None:
        self.behaviours = dict(behaviours or {})
        self.calls: dict[str, int] = defaultdict(int)
        self.events: list[tuple[str, str]] = []  # ("start" | "end", action id), in the order they happened
        self.running = 0
        self.max_running = 0
        self.cancel_seen: dict[str, list[bool]] = defaultdict(list)  # per call: was its cancel flag set?
        self._lock = threading.Lock()

    def __call__(self, act: Action) -> Mapping[str, Any]:
        with self._lock:
            self.calls[act.id] += 1
            attempt = self.calls[act.id]
            self.events.append(("start", act.id))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            behaviour = self.behaviours.get(act.id)
            return behaviour(attempt) if behaviour is not None else {"done": act.id}
        finally:
            with self._lock:
                self.running -= 1
                self.events.append(("end", act.id))
                self.cancel_seen[act.id].append(current().cancelled.is_set())


def fail_times(error: Callable[[], BaseException], times: int) -> Behaviour:
    """Raise ``error()`` on the first ``times`` attempts, then succeed."""

    def behaviour(attempt: int) -> Mapping[str, Any]:
        if attempt <= times:
            raise error()
        return {"attempt": attempt}

    return behaviour


def blocks(gate: threading.Event, *, started: threading.Event | None = None) -> Behaviour:
    """Wait for ``gate`` (or for the call to be cancelled), then succeed."""

    def behaviour(attempt: int) -> Mapping[str, Any]:
        if started is not None:
            started.set()
        context = current()
        while not gate.is_set() and not context.cancelled.is_set():
            gate.wait(0.01)
        return {"released": gate.is_set()}

    return behaviour


def hangs(entered: threading.Event | None = None) -> Behaviour:
    """Block until the call's cancel flag is set (a driver that ignores its deadline but honours cancel)."""

    def behaviour(attempt: int) -> Mapping[str, Any]:
        if entered is not None:
            entered.set()
        current().cancelled.wait(30)
        return {"late": True}

    return behaviour


def position(events: Sequence[tuple[str, str]], what: str, action_id: str) -> int:
    return events.index((what, action_id))


def wait_for(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll ``condition`` until it holds (for effects of abandoned worker threads, which nobody joins)."""
    pause = threading.Event()
    for _ in range(int(limit / 0.01)):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError("the condition was not reached in time")
