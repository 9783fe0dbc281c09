"""The optional authorize program, a real process run after the rules: it gets the built-in verdict and the
request, and its answer is final; a program that hangs, crashes or prints garbage denies (fails closed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nebctl.controller.access import Authorizer
from nebctl.core.access import Identity, Target
from nebctl.core.settings import AccessSettings
from nebctl.database.store import Store

ALICE = Identity("alice", ("ops",))
VM = Target("vm", "team-a", "web", "site")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'db'}") as store:
        store.add_access_rule(subject_type="group", subject="ops", actions=["get"])
        yield store


def _program(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "authorize"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_the_program_sees_the_verdict_and_may_overturn_it(store: Store, tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    # Allows the gets of namespace team-a, and nothing else.
    program = _program(
        tmp_path,
        f"cat > {seen}\n"
        f'if grep -q \'"action": "get"\' {seen} && grep -q \'"namespace": "team-a"\' {seen}; then\n'
        '  echo \'{"allowed": true, "reason": "team-a is open"}\'\n'
        "else\n"
        '  echo \'{"allowed": false, "reason": "closed"}\'\n'
        "fi\n",
    )
    authorizer = Authorizer(store, AccessSettings(authorize_program=program))
    decision = authorizer.authorize(ALICE, "get", VM)
    assert decision.allowed and decision.reason.startswith("allowed by the authorize program: team-a is open")
    payload = json.loads(seen.read_text())
    assert payload == {
        "identity": {"name": "alice", "groups": ["ops"], "driver": "builtin"},
        "action": "get",
        "target": {"kind": "vm", "namespace": "team-a", "name": "web", "stack": "site"},
        "decision": {"allowed": True, "rule": 1, "reason": payload["decision"]["reason"]},
    }
    # The rules allow this get too, but the program says no.
    elsewhere = authorizer.authorize(ALICE, "get", Target("vm", "prod", "db", "site"))
    assert not elsewhere.allowed and "denied by the authorize program: closed" in elsewhere.reason
    # The rules deny apply; the program is asked and may not be more generous here either.
    assert not authorizer.authorize(ALICE, "apply", VM).allowed
    assert json.loads(seen.read_text())["decision"]["allowed"] is False


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("sleep 30\n", "did not answer within 1s"),
        ("exit 3\n", "exited with 3"),
        ("echo yes\n", "not JSON"),
        ('echo \'{"allowed": "yes"}\'\n', "'allowed' must be true or false"),
    ],
)
def test_a_failing_program_denies(store: Store, tmp_path: Path, body: str, why: str) -> None:
    authorizer = Authorizer(store, AccessSettings(authorize_program=_program(tmp_path, body), authorize_timeout=1))
    decision = authorizer.authorize(ALICE, "get", VM)  # the rules allow it
    assert not decision.allowed and why in decision.reason
