"""``nebctl apply`` as users run it, in real subprocesses on the simulated fleet: injected faults, the summary
of a partial apply, two applies at once, and Ctrl-C (SIGINT) once and twice.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nebctl.drivers.sim import Fault, FaultKind
from tests.support.drills import (
    FINAL_ACTION_STATES,
    Workspace,
    audit,
    finish,
    fleet_manifests,
    loose_actions,
)

FAST_RETRY = {"attempts": 10, "initial_delay": 0.001, "max_delay": 0.01}


def _workspace(root: Path, *, vms: int, hosts: int = 3, **settings: object) -> Workspace:
    manifests = root / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=vms, hosts=hosts), encoding="utf-8")
    return Workspace(root / "ws", manifests=manifests, stack="fleet", settings_overrides=dict(settings))


def _wait_for_progress(workspace: Workspace, process: subprocess.Popen[str], finished: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "the apply ended before it could be interrupted"
        if workspace.journal_progress()[0] >= finished:
            return
        time.sleep(0.005)
    raise AssertionError("the apply made no progress")


def test_twenty_percent_temporary_failures_converge(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=10, retry=FAST_RETRY)
    with workspace.fleet() as fleet:
        fleet.set_fault(Fault("*", FaultKind.TEMPORARY, probability=0.2))
    result = workspace.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "will retry in" in result.stdout  # faults fired and were retried, not avoided
    assert "Apply complete!" in result.stdout
    with workspace.fleet() as fleet:
        fleet.clear_faults()  # the diff's own probes should not be the thing that fails
    diff = workspace.diff()
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert audit(workspace) == []


def test_one_permanent_failure_exits_1_and_the_summary_names_it_and_what_it_blocked(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=6)
    with workspace.store() as store:
        plan = workspace.plan(store).plan
    host = next(a.host for a in plan.actions if a.operation == "deploy")
    with workspace.fleet() as fleet:
        # The first deploy on that host fails for good; which VM that is depends on the threads' order.
        fleet.set_fault(
            Fault("virtualization.deploy", FaultKind.PERMANENT, host=host, count=1, message="no KVM on host")
        )
    result = workspace.apply()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    failed = re.findall(r"^  (vm/[a-z0-9-]+:deploy): .*no KVM on host", result.stderr, flags=re.MULTILINE)
    assert len(failed) == 1, output
    victim = next(a for a in plan.actions if a.id == failed[0])
    assert victim.host == host
    blocked = sorted(after for before, after in plan.edges if before == victim.id)
    assert blocked  # the NIC's post action waits for the deploy
    assert re.search(rf"Failed:\n  {re.escape(victim.id)}: ", result.stderr), output
    for action_id in blocked:
        assert f"{action_id} (blocked by {victim.id})" in result.stderr, output
    total = len(plan.actions)
    assert f"{total - 1 - len(blocked)} succeeded, 1 failed, {len(blocked)} skipped" in result.stdout, output
    # Every other VM is done: the next apply only finishes the victim.
    again = workspace.apply()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in again.stdout, again.stdout
    assert audit(workspace) == []


@pytest.mark.slow
def test_two_applies_started_together_one_acts_the_other_exits_3_naming_the_holder(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=8)
    # Slow enough that the winner still holds the lock when the loser, started at the same time, asks.
    workspace.set_latency(0.25, 0.3)
    first, second = (workspace.start_apply("--parallelism", "2", "--lock-timeout", "0") for _ in range(2))
    outputs = [finish(p, timeout=240) for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes == [0, 3], outputs
    loser = outputs[[first.returncode, second.returncode].index(3)]
    assert re.search(r"lock 'writers' is held by nebctl apply \(stack fleet\) on host \S+, pid \d+", loser[1]), loser
    with workspace.store() as store:
        assert len(store.list_applies(stack="fleet")) == 1  # only one of them acted
    assert audit(workspace) == []


@pytest.mark.slow
def test_an_apply_waiting_for_the_lock_then_finds_nothing_to_do(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=4)
    workspace.set_latency(0.05, 0.1)
    first, second = (workspace.start_apply("--lock-timeout", "5m") for _ in range(2))
    outputs = [finish(p, timeout=240) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert sum("No changes." in out for out, _ in outputs) == 1, outputs
    with workspace.store() as store:
        (apply,) = store.list_applies(stack="fleet")
        assert apply.state == "succeeded"
    assert audit(workspace) == []


@pytest.mark.slow
def test_ctrl_c_stops_new_actions_waits_for_running_ones_and_the_next_apply_finishes(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=8)
    workspace.set_latency(0.1, 0.15)
    process = workspace.start_apply("--parallelism", "3")
    _wait_for_progress(workspace, process, finished=6)
    process.send_signal(signal.SIGINT)
    out, err = finish(process, timeout=120)
    assert process.returncode == 1, out + err
    assert "Interrupted: no new actions will start" in err
    assert "did not run: the apply was interrupted; run it again to finish" in err
    with workspace.store() as store:
        (apply,) = store.list_applies(stack="fleet")
        assert apply.state == "interrupted" and apply.finished_at is not None
        actions = store.actions_of(apply.id)
        states = {str(a.state) for a in actions}
        assert states <= FINAL_ACTION_STATES, states
        assert "cancelled" in states and "succeeded" in states
        # The running ones were waited for: none was cut short (that is what a second Ctrl-C is for).
        assert not [a for a in actions if a.state == "cancelled" and "while running" in (a.error or "")]
        assert loose_actions(store, "fleet") == []
    again = workspace.apply()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Resuming interrupted apply" not in again.stdout  # it ended cleanly: nothing to resume
    assert workspace.diff().returncode == 0
    assert audit(workspace) == []


@pytest.mark.slow
def test_a_second_ctrl_c_cancels_running_actions_and_the_journal_stays_consistent(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=6)
    workspace.set_latency(0.1, 0.15)
    with workspace.fleet() as fleet:
        fleet.set_fault(Fault("virtualization.deploy", FaultKind.HANG))  # deploys hang until cancelled
    process = workspace.start_apply("--parallelism", "4")
    deadline = time.monotonic() + 120
    with workspace.store() as store:
        while time.monotonic() < deadline:
            applies = store.list_applies(stack="fleet")
            if applies and any(
                a.operation == "deploy" and a.state == "running" for a in store.actions_of(applies[0].id)
            ):
                break
            time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out, err = finish(process, timeout=60)
    assert process.returncode == 1, out + err
    assert "Cancelling the running actions." in err
    with workspace.store() as store:
        (apply,) = store.list_applies(stack="fleet")
        assert apply.state == "interrupted"
        actions = store.actions_of(apply.id)
        assert {str(a.state) for a in actions} <= FINAL_ACTION_STATES
        assert [a for a in actions if a.operation == "deploy" and "while running" in (a.error or "")]
    with workspace.fleet() as fleet:
        fleet.clear_faults()
    again = workspace.apply()
    assert again.returncode == 0, again.stdout + again.stderr
    assert audit(workspace) == []
