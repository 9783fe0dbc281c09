"""``lifecycle.createBeforeDestroy`` through ``Controller.apply`` on the simulated fleet: the new VM runs beside
the old one before the old one goes, an apply that dies at any round boundary is finished by the next one, and a
failing deletion of the old VM is retried without ``--prune``. Each ends audited: one sim VM per declared VM,
no orphan volume or lease, a clean journal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from nebctl.controller.applying.executing import Change, Outcome
from nebctl.core.keys import ResourceKey
from nebctl.database.records import ApplyState
from nebctl.drivers.sim import Fault, FaultKind
from nebctl.reconcilers.identity import VMIdentity
from nebctl.schemas.models import HOOK_EVENT_PATTERN
from tests.support.drills import Workspace, audit, fleet_manifests
from tests.unit.planning.world import colliding_long_names

VMS = 2


def _manifests(user_data: str) -> str:
    """The drill's fleet, every VM asking for create-first replacements, with cloud-init data that forces one
    when it changes."""
    text = fleet_manifests(vms=VMS, hosts=2)
    return text.replace(
        "  placement: {policy: striping}\n",
        f"  placement: {{policy: striping}}\n  cloudInit: {{userData: '{user_data}'}}\n"
        "  lifecycle: {createBeforeDestroy: true}\n",
    )


def _workspace(root: Path) -> Workspace:
    manifests = root / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "fleet.yaml").write_text(_manifests("#cloud-config v1"), encoding="utf-8")
    return Workspace(root / "ws", manifests=manifests, stack="fleet")


def _edit(workspace: Workspace, user_data: str) -> None:
    (workspace.manifests / "fleet.yaml").write_text(_manifests(user_data), encoding="utf-8")


def _sim_vms(workspace: Workspace) -> dict[str, str]:
    """Name -> state of every VM of the sim fleet."""
    with workspace.fleet() as fleet:
        return dict(fleet.store.read().execute("SELECT name, state FROM vms").fetchall())


def _sim_volumes(workspace: Workspace) -> set[str]:
    with workspace.fleet() as fleet:
        return {name for (name,) in fleet.store.read().execute("SELECT name FROM volumes")}


VM0 = ResourceKey.parse("vm/vm-0000")


def test_the_new_vm_runs_beside_the_old_one_before_the_old_one_goes(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    with workspace.store() as store:
        workspace.controller(store).apply(workspace.plan(store))
        before = {r.key: r for r in store.list_resources(stack="fleet")}[VM0]
        assert before.applied is not None
        old_ip = before.applied["nics"][0]["ip"]
        _edit(workspace, "#cloud-config v2")
        planned = workspace.plan(store)
        assert [str(c.key) for c in planned.plan.changes if c.is_change] == [
            "vm/vm-0000",
            "vm/vm-0000~0",
            "vm/vm-0001",
            "vm/vm-0001~0",
        ]
        seen_together: list[dict[str, str]] = []

        def watch(changes: Sequence[Change]) -> None:
            for change in changes:
                if change.state is Outcome.SUCCEEDED and change.action.id == "vm/vm-0000:deploy":
                    seen_together.append(_sim_vms(workspace))

        result = workspace.controller(store).apply(planned, on_change=watch)
        assert result.state == ApplyState.SUCCEEDED
        # When the new VM had started, the old one still ran.
        assert seen_together == [seen_together[0]]
        assert {"vm-0000": "running", "vm-0000~1": "running"}.items() <= seen_together[0].items()
        # Now only the new one is left, with its own disk and address; the old disk is gone.
        assert _sim_vms(workspace) == {"vm-0000~1": "running", "vm-0001~1": "running"}
        assert {"vm-0000~1-disk0", "vm-0001~1-disk0"} <= _sim_volumes(workspace)
        assert not {"vm-0000-disk0", "vm-0001-disk0"} & _sim_volumes(workspace)
        records = {r.key: r for r in store.list_resources(stack="fleet")}
        after = records[VM0]
        assert after.live["incarnation"] == 1 and after.live["uuid"] == VMIdentity.of(VM0, 1).uuid
        assert after.applied is not None and after.applied["nics"][0]["ip"] != old_ip
        assert not [key for key in records if "~" in key.name]
        events = store.list_events(limit=1000)
        deposed = [e for e in events if e.type == "vm.deposed"]
        assert sorted(str(e.name) for e in deposed) == ["vm-0000", "vm-0001"]
        # Hooks can subscribe to every event of a resource or an apply (action.* are the journal's detail).
        for event in events:
            assert event.type.startswith("action.") or re.fullmatch(HOOK_EVENT_PATTERN, event.type), event.type
        assert not workspace.plan(store).plan.has_changes
    assert audit(workspace) == []


class Crash(BaseException):
    """Stands for the process dying: raised from the progress callback, it unwinds out of the apply."""


@pytest.mark.parametrize("after", [1, 3, 5, 7, 9, 11])
def test_an_apply_that_dies_anywhere_in_a_create_first_replacement_is_finished_by_the_next(
    tmp_path: Path, after: int
) -> None:
    workspace = _workspace(tmp_path)
    with workspace.store() as store:
        workspace.controller(store).apply(workspace.plan(store))
        _edit(workspace, "#cloud-config v2")
        succeeded: list[str] = []

        def die(changes: Sequence[Change]) -> None:
            succeeded.extend(c.action.id for c in changes if c.state is Outcome.SUCCEEDED)
            if len(succeeded) >= after:
                raise Crash

        with pytest.raises(Crash):
            workspace.controller(store).apply(workspace.plan(store), parallelism=2, on_change=die)
        # The journal deposed the old VMs before the first action, so the next plan finishes the new VMs as plain
        # creates and deletes what is left of the old ones: it cannot mistake one for the other.
        resumed = workspace.plan(store)
        assert resumed.plan.has_changes and not any(c.create_first for c in resumed.plan.changes)
        assert {c.type.value for c in resumed.plan.changes if c.is_change} <= {"create", "delete"}
        result = workspace.controller(store).apply(resumed)
        assert result.state == ApplyState.SUCCEEDED, [r.error for r in result.report.with_state(Outcome.FAILED)]
        assert _sim_vms(workspace) == {"vm-0000~1": "running", "vm-0001~1": "running"}
        assert not workspace.plan(store).plan.has_changes
    assert audit(workspace) == []


def test_a_failed_deletion_of_the_old_vm_is_retried_by_the_next_apply_without_prune(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    with workspace.store() as store:
        workspace.controller(store).apply(workspace.plan(store))
        _edit(workspace, "#cloud-config v2")
        with workspace.fleet() as fleet:
            fleet.set_fault(Fault("virtualization.undeploy", FaultKind.PERMANENT, count=1, message="stuck"))
        result = workspace.controller(store).apply(workspace.plan(store))
        assert result.state == ApplyState.PARTIAL
        [failed] = result.report.with_state(Outcome.FAILED)
        assert failed.action.key.name.endswith("~0") and failed.action.operation == "undeploy"
        # The new VMs are done; one old VM is still there, kept by its deposed record, which users can see.
        assert len(_sim_vms(workspace)) == 3
        deposed = failed.action.key.name
        listed = workspace.run("get", "vm")
        assert listed.returncode == 0 and deposed in listed.stdout, listed.stderr
        described = workspace.run("describe", f"vm/{deposed}")
        assert described.returncode == 0, described.stderr
        assert "Deposed:     the old VM of vm/vm-000" in described.stdout
        again = workspace.plan(store)
        [change] = [c for c in again.plan.changes if c.is_change]
        assert change.key == failed.action.key and change.reason.startswith("the old VM of vm/")
        assert workspace.controller(store).apply(again).state == ApplyState.SUCCEEDED
        assert _sim_vms(workspace) == {"vm-0000~1": "running", "vm-0001~1": "running"}
    assert audit(workspace) == []


def test_old_vms_whose_names_shorten_alike_are_both_deposed_and_deleted(tmp_path: Path) -> None:
    first, second = colliding_long_names()
    workspace = _workspace(tmp_path)
    fleet_yaml = workspace.manifests / "fleet.yaml"

    def write(user_data: str) -> None:
        text = _manifests(user_data).replace("vm-0000", first).replace("vm-0001", second)
        fleet_yaml.write_text(text, encoding="utf-8")

    write("#cloud-config v1")
    assert workspace.apply().returncode == 0
    write("#cloud-config v2")
    with workspace.store() as store:
        planned = workspace.plan(store)
        deposed = {c.key for c in planned.plan.changes if c.type.value == "delete"}
        assert len(deposed) == 2
        result = workspace.controller(store).apply(planned)
        assert result.state == ApplyState.SUCCEEDED, [r.error for r in result.report.with_state(Outcome.FAILED)]
        assert not workspace.plan(store).plan.has_changes
    # Each old VM went: one sim VM per declared VM, nothing left over.
    assert audit(workspace) == []
