"""``Controller.apply`` on the simulated fleet, in this process: faults, failures that block only their
descendants, records finalised per resource, and resuming an apply whose process died.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from nebctl.controller.applying.executing import Change, Outcome
from nebctl.core.keys import Kind
from nebctl.database.records import ApplyState
from nebctl.drivers.sim import Fault, FaultKind
from tests.support.drills import FINAL_ACTION_STATES, Workspace, audit, fleet_manifests

FAST_RETRIES = {"retry": {"attempts": 8, "initial_delay": 0.001, "max_delay": 0.01}}


def _workspace(root: Path, vms: int, **settings: object) -> Workspace:
    manifests = root / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "fleet.yaml").write_text(fleet_manifests(vms=vms, hosts=3), encoding="utf-8")
    return Workspace(root / "ws", manifests=manifests, stack="fleet", settings_overrides=dict(settings))


class Crash(BaseException):
    """Stands for the process dying: raised from the progress callback, it unwinds out of the apply."""


def test_an_apply_whose_process_died_is_closed_as_interrupted_and_resumed(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=4)
    with workspace.store() as store:
        controller = workspace.controller(store)
        planned = workspace.plan(store)
        seen: list[Change] = []

        def die_midway(changes: Sequence[Change]) -> None:
            seen.extend(changes)
            if sum(c.state is Outcome.SUCCEEDED for c in seen) >= 6:
                raise Crash

        with pytest.raises(Crash):
            controller.apply(planned, parallelism=4, on_change=die_midway)
        (dead,) = store.list_applies(stack="fleet")
        assert dead.finished_at is None
        assert {str(a.state) for a in store.actions_of(dead.id)} & {"pending", "running"}

        resumed: list[tuple[int, int, int]] = []
        result = controller.apply(workspace.plan(store), on_resume=lambda *args: resumed.append(args))
        assert result.state == ApplyState.SUCCEEDED
        assert result.resumed_from == dead.id
        assert resumed and resumed[0][0] == dead.id and resumed[0][1] >= 6
        closed = store.get_apply(dead.id)
        assert closed is not None and closed.state == ApplyState.INTERRUPTED and closed.finished_at is not None
        old = store.actions_of(dead.id)
        # Nothing of the dead apply stays pending or running: each is final, and says why.
        assert {str(a.state) for a in old} <= FINAL_ACTION_STATES
        for action in old:
            if action.state == "cancelled":
                assert f"apply #{dead.id} died" in (action.error or "")
        assert not workspace.plan(store).plan.has_changes
    assert audit(workspace) == []


def test_an_action_queued_when_the_process_died_is_closed_as_possibly_started(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=8)
    with workspace.store() as store:
        controller = workspace.controller(store)
        queued: list[str] = []

        def die_once_one_is_queued(changes: Sequence[Change]) -> None:
            queued.extend(c.action.id for c in changes if c.state is Outcome.QUEUED)
            if queued:
                raise Crash

        with pytest.raises(Crash):
            controller.apply(workspace.plan(store), parallelism=4, on_change=die_once_one_is_queued)
        (dead,) = store.list_applies(stack="fleet")
        journalled = {a.action_id: a for a in store.actions_of(dead.id)}
        assert {str(journalled[action_id].state) for action_id in queued} == {"queued"}

        result = controller.apply(workspace.plan(store))
        assert result.state == ApplyState.SUCCEEDED and result.resumed_from == dead.id
        closed = {a.action_id: a for a in store.actions_of(dead.id)}
        for action_id in queued:
            assert closed[action_id].state == "cancelled"
            died = f"interrupted while starting or running: the process of apply #{dead.id} died"
            assert closed[action_id].error == died
    assert audit(workspace) == []


def test_twenty_percent_temporary_failures_still_converge(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=12, **FAST_RETRIES)
    with workspace.fleet() as fleet:
        fleet.set_fault(Fault("*", FaultKind.TEMPORARY, probability=0.2))
    with workspace.store() as store:
        controller = workspace.controller(store)
        result = controller.apply(workspace.plan(store))
        retried = [r for r in result.report.reports.values() if r.attempts > 1]
        assert result.state == ApplyState.SUCCEEDED, [r.error for r in result.report.with_state(Outcome.FAILED)]
        assert retried  # the faults did fire, and were retried through
        assert not workspace.plan(store).plan.has_changes
        retries = [e for e in store.list_events(limit=1000) if e.type == "action.retry"]
        assert len(retries) == sum(r.attempts - 1 for r in result.report.reports.values())
    with workspace.fleet() as fleet:
        fleet.clear_faults()
    assert audit(workspace) == []


def test_a_permanent_failure_blocks_only_what_depends_on_it(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=6)
    with workspace.store() as store:
        planned = workspace.plan(store)
        host = next(a.host for a in planned.plan.actions if a.operation == "deploy")
        with workspace.fleet() as fleet:
            # The first deploy on that host fails for good; which VM that is depends on the threads' order.
            fleet.set_fault(Fault("virtualization.deploy", FaultKind.PERMANENT, host=host, count=1, message="no KVM"))
        result = workspace.controller(store).apply(planned)
        reports = result.report.reports
        assert result.state == ApplyState.PARTIAL
        failed = result.report.with_state(Outcome.FAILED)
        assert len(failed) == 1 and failed[0].action.operation == "deploy" and failed[0].action.host == host
        victim = failed[0].action
        assert "no KVM" in (failed[0].error or "")
        needs = planned.plan.dependencies()
        descendants = {victim.id}
        changed = True
        while changed:
            before = len(descendants)
            descendants |= {a for a, deps in needs.items() if descendants & set(deps)}
            changed = len(descendants) != before
        for action_id, report in reports.items():
            if action_id == victim.id:
                continue
            if action_id in descendants:
                assert report.state is Outcome.SKIPPED and report.blocked_by == victim.id, action_id
            else:
                assert report.state is Outcome.SUCCEEDED, (action_id, report.state, report.error)
        # Only the failed VM's record is unfinished; the other VMs are finalised with their applied spec.
        records = {r.key: r for r in store.list_resources(stack="fleet")}
        assert records[victim.key].status == "failed"
        assert records[victim.key].applied is None
        for key, record in records.items():
            if key != victim.key:
                assert record.applied is not None, key
        # The next apply (the fault was a one-off) finishes the blocked VM.
        again = workspace.controller(store).apply(workspace.plan(store))
        assert again.state == ApplyState.SUCCEEDED
        vms = {r.action.key for r in again.report.reports.values() if r.action.key.kind is Kind.VIRTUAL_MACHINE}
        assert vms == {victim.key}
    assert audit(workspace) == []


def test_an_apply_records_its_start_and_a_vms_migration_as_events(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, vms=2)
    with workspace.store() as store:
        workspace.controller(store).apply(workspace.plan(store))
        vm = next(r for r in store.list_resources(stack="fleet") if r.key.kind is Kind.VIRTUAL_MACHINE)
        target = next(h for h in ("h00", "h01", "h02") if h != vm.host)
        fleet = workspace.manifests / "fleet.yaml"
        text = fleet.read_text(encoding="utf-8")
        document = f"metadata: {{name: {vm.key.name}, namespace: default}}"
        head, _, tail = text.partition(document)
        fleet.write_text(
            head + document + tail.replace("placement: {policy: striping}", f"placement: {{host: {target}}}", 1),
            encoding="utf-8",
        )
        result = workspace.controller(store).apply(workspace.plan(store))
        assert result.state == ApplyState.SUCCEEDED
        events = store.list_events(limit=1000)
        started = [e for e in events if e.type == "apply.started"]
        assert len(started) == 2 and started[-1].data["change"] == 1
        [migrated] = [e for e in events if e.type == "vm.migrated"]
        assert (migrated.name, migrated.message) == (
            vm.key.name,
            f"vm/{vm.key.name} migrated from {vm.host} to {target}",
        )
