"""The crash drill: ``nebctl apply`` is SIGKILLed at many points of a plan on the simulated fleet (with
latency), then applied again until it converges. Whatever the moment of the kill, the end state must be the
same as an uninterrupted apply's: every declared VM exactly once, one volume per disk, one lease per NIC,
nothing the records do not explain, a journal with no loose end, and a diff with nothing to do.

A round kills a fresh apply, then usually kills the apply that resumes it, and so on, before a last apply
runs to the end: so kills land in first applies and in resumed ones, and starting a process (the costly
part) is paid once per kill. Each round has its own database and fleet file, so rounds run side by side.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.drills import Workspace, audit, kill_after, loose_actions

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


def _drill(root: Path, round_: Round) -> Round:
    workspace = Workspace(root / round_.name, stack="examples")
    workspace.set_latency(*LATENCY)
    expect_resume = False
    for number, finished in enumerate(round_.kills):
        process = workspace.start_apply("--parallelism", "4")
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
        f"unresumed={r.unresumed} problems={r.problems}"
        for r in done
    )
    landed = [n for r in done for n in r.landed if n >= 0]
    assert len(landed) >= 20, report
    assert len({r.landed[0] for r in done if r.landed[0] >= 0}) >= 7, report  # spread over the first plan
    for r in done:
        assert r.problems == [], report
        assert r.unresumed == [], report
        assert r.final_code == 0 and r.diff_code == 0, report
