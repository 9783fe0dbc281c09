"""The crash drill: ``nebctl apply`` is SIGKILLed at many points of a plan on the simulated fleet (with
latency), then applied again until it converges. Whatever the moment of the kill, the end state must be the
same as an uninterrupted apply's: every declared VM exactly once, one volume per disk, one lease per NIC,
nothing the records do not explain, a journal with no loose end, and a diff with nothing to do.

The same drill for ``nebctl destroy`` and ``apply --prune`` of a built fleet: whatever the moment of the kill,
running the command again finishes it, leaving nothing on the fleet and no record without its object.

A round kills a fresh apply, then usually kills the apply that resumes it, and so on, before a last apply
runs to the end: so kills land in first applies and in resumed ones, and starting a process (the costly
part) is paid once per kill. Each round has its own database and fleet file, so rounds run side by side.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.drills import (
    Workspace,
    audit,
    audit_destroyed,
    first_kill,
    fleet_manifests,
    kill_after,
    loose_actions,
)

LATENCY = (0.02, 0.05)  # seconds per driver call: long enough for kills to land between actions
RESUMING = "Resuming interrupted apply #"

# Finished actions (of each successive apply's own plan) at which each kill lands. The first kills of the
# rounds cover the whole first plan (63 actions for manifests/examples); later ones hit resumed applies.
ROUNDS: dict[str, tuple[int, ...]] = {
    "at-start": (0, 0, 0, 0),
    "early": (2, 3, 3, 1),
    "quarter": (8, 6, 4),
    "middle": (20, 10, 5, 2),
    "two-thirds": (33, 7, 1),
    "late": (45, 4, 0),
    "end": (58, 1),
    "last": (62,),
}


@dataclass
class Round:
    name: str
    kills: tuple[int, ...]
    landed: list[int] = field(default_factory=list)  # finished actions when each kill landed (-1: exited first)
    unresumed: list[str] = field(default_factory=list)  # applies after a kill that did not say they resumed
    final_code: int | None = None
    diff_code: int | None = None
    problems: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)  # first runs that ended before their kill (then tried again)


def _exited_by_itself(round_: Round, landed: int, output: str) -> None:
    """A first run that was never killed: after every try ran to its end (the report says so), or failed."""
    if landed < 0:
        round_.problems.append(f"the first run was not killed ({round_.misses}); it printed: {output[-1500:]}")


def _drill(root: Path, round_: Round) -> Round:
    def prepare(attempt: int) -> Workspace:
        workspace = Workspace(root / f"{round_.name}-{attempt}", stack="examples")
        workspace.set_latency(*LATENCY)
        return workspace

    def start(workspace: Workspace) -> subprocess.Popen[str]:
        return workspace.start_apply("--parallelism", "4")

    workspace, landed, output, round_.misses = first_kill(prepare, start, finished=round_.kills[0])
    round_.landed.append(landed)
    _exited_by_itself(round_, landed, output)
    expect_resume = workspace.newest_apply()[1]
    for number, finished in enumerate(round_.kills[1:], start=1):
        process = start(workspace)
        landed, output = kill_after(workspace, process, finished=finished)
        round_.landed.append(landed)
        if expect_resume and RESUMING not in output:
            round_.unresumed.append(f"apply {number + 1} (exit {process.returncode}): {output[-1500:]!r}")
        expect_resume = workspace.newest_apply()[1]
    for attempt in range(3):
        result = workspace.apply("--parallelism", "16")
        if expect_resume and attempt == 0 and RESUMING not in result.stdout:
            round_.unresumed.append(f"final apply: {result.stdout[:400]!r}")
        round_.final_code = result.returncode
        if result.returncode == 0:
            break
        round_.problems.append(f"final apply {attempt + 1} exited {result.returncode}: {result.stderr[-2000:]}")
    round_.diff_code = workspace.diff().returncode
    round_.problems += audit(workspace)
    with workspace.store() as store:
        round_.problems += loose_actions(store, workspace.stack)
    return round_


def test_the_drill_plan_is_big_enough(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "size", stack="examples")
    with workspace.store() as store:
        assert len(workspace.plan(store).plan.actions) >= 50


@pytest.mark.slow
def test_apply_killed_at_any_point_converges_without_duplicates_or_orphans(tmp_path: Path) -> None:
    rounds = [Round(name, kills) for name, kills in ROUNDS.items()]
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda r: _drill(tmp_path, r), rounds))

    report = "\n".join(
        f"{r.name}: landed {r.landed} final={r.final_code} diff={r.diff_code} "
        f"unresumed={r.unresumed} problems={r.problems} misses={r.misses}"
        for r in done
    )
    landed = [n for r in done for n in r.landed if n >= 0]
    assert len(landed) >= 20, report
    assert len({r.landed[0] for r in done if r.landed[0] >= 0}) >= 7, report  # spread over the first plan
    for r in done:
        assert r.problems == [], report
        assert r.unresumed == [], report
        assert r.final_code == 0 and r.diff_code == 0, report


# --- destroy and apply --prune ----------------------------------------------------------------------------------

# Finished actions at which each kill lands, over a teardown of 12 VMs on 3 hosts (about 45 actions).
TEARDOWN_ROUNDS: dict[str, tuple[int, ...]] = {
    "at-start": (0, 0, 0, 0),
    "early": (2, 3, 1, 1),
    "quarter": (10, 4, 2),
    "middle": (20, 6, 2),
    "two-thirds": (30, 3, 1),
    "late": (38, 1, 0),
    "end": (41, 2, 0),
}


def _teardown_drill(root: Path, round_: Round, *, prune: bool) -> Round:
    """Build a fleet, then kill its destroy (or its apply --prune to one host and no VM) at the round's
    points, and run the command again until it finishes."""

    def prepare(attempt: int) -> Workspace:
        manifests = root / f"{round_.name}-{attempt}-manifests"
        manifests.mkdir(parents=True)
        (manifests / "fleet.yaml").write_text(fleet_manifests(vms=12, hosts=3), encoding="utf-8")
        workspace = Workspace(root / f"{round_.name}-{attempt}", manifests=manifests, stack="fleet")
        built = workspace.apply("--parallelism", "16")
        assert built.returncode == 0, f"the fleet was not built: {built.stderr[-2000:]}"
        workspace.set_latency(*LATENCY)
        if prune:
            (manifests / "fleet.yaml").write_text(fleet_manifests(vms=0, hosts=1), encoding="utf-8")
        return workspace

    def args(workspace: Workspace, parallelism: str) -> list[str]:
        if prune:
            return workspace.apply_args("--prune", "--parallelism", parallelism)
        return workspace.destroy_args("--parallelism", parallelism)

    workspace, landed, output, round_.misses = first_kill(
        prepare, lambda workspace: workspace.start(args(workspace, "4")), finished=round_.kills[0]
    )
    round_.landed.append(landed)
    _exited_by_itself(round_, landed, output)
    expect_resume = workspace.newest_apply()[1]
    for number, finished in enumerate(round_.kills[1:], start=1):
        process = workspace.start(args(workspace, "4"))
        landed, output = kill_after(workspace, process, finished=finished)
        round_.landed.append(landed)
        if expect_resume and RESUMING not in output:
            round_.unresumed.append(f"run {number + 1} (exit {process.returncode}): {output[-1500:]!r}")
        expect_resume = workspace.newest_apply()[1]
    # One more run must finish: a second one would hide a first that fails for good.
    result = workspace.start(args(workspace, "16"))
    out, err = result.communicate(timeout=120)
    round_.final_code = result.returncode
    if result.returncode != 0:
        round_.problems.append(f"the last run exited {result.returncode}: {out[-1500:]} {err[-1500:]}")
    round_.diff_code = workspace.diff().returncode if prune else 0
    round_.problems += audit(workspace) if prune else audit_destroyed(workspace)
    with workspace.store() as store:
        round_.problems += loose_actions(store, workspace.stack)
    return round_


@pytest.mark.slow
@pytest.mark.parametrize("prune", [False, True], ids=["destroy", "apply-prune"])
def test_teardown_killed_at_any_point_is_finished_by_the_next_run(tmp_path: Path, prune: bool) -> None:
    rounds = [Round(name, kills) for name, kills in TEARDOWN_ROUNDS.items()]
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda r: _teardown_drill(tmp_path, r, prune=prune), rounds))

    report = "\n".join(
        f"{r.name}: landed {r.landed} final={r.final_code} diff={r.diff_code} "
        f"unresumed={r.unresumed} problems={r.problems} misses={r.misses}"
        for r in done
    )
    landed = [n for r in done for n in r.landed if n >= 0]
    assert len(landed) >= 20, report
    assert len({r.landed[0] for r in done if r.landed[0] >= 0}) >= 6, report  # spread over the first run
    for r in done:
        assert r.problems == [], report
        assert r.unresumed == [], report
        assert r.final_code == 0 and r.diff_code == 0, report
