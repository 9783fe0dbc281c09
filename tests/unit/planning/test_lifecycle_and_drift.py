"""What a plan may not do (preventDestroy, another stack's objects, prune without --prune), and drift: live
objects that differ from what was last applied."""

from __future__ import annotations

import dataclasses

import pytest

from nebctl.controller.planning import PlanError
from nebctl.core.fields import Effect
from nebctl.core.plans import ChangeType, DriftItem
from nebctl.drivers.states import HostLiveState, VMLiveState
from tests.unit.planning.world import (
    BASE,
    GiB,
    World,
    change_of,
    converge,
    key,
    operations,
    precedes,
    vm,
    without,
)

PROTECTED = {"memory: 2Gi": "memory: 2Gi\n  lifecycle: {preventDestroy: true}"}
WEB = key("vm/web")


@pytest.fixture(scope="module")
def world() -> World:
    return converge(BASE, vm(), vm("db"))


# --- prune, preventDestroy, stacks ------------------------------------------------------------------------


def test_removed_vm_is_kept_with_a_warning_without_prune(world: World) -> None:
    plan = world.plan(BASE, vm("db"))
    assert not plan.has_changes
    assert plan.warnings == ("vm/web is no longer in the manifests; it is kept (use --prune to delete it)",)


def test_removed_vm_is_deleted_with_prune(world: World) -> None:
    plan = world.plan(BASE, vm("db"), prune=True)
    change = change_of(plan, "vm/web")
    assert change.type is ChangeType.DELETE and change.host == "h1"
    assert operations(plan) == ["undeploy", "delete", "clean"]
    assert plan.summary.destroy == 1 and plan.warnings == ()


def test_prune_deletes_users_before_what_they_use(world: World) -> None:
    # The VMs go with the network and the security group they use, and the image they were cloned from.
    plan = world.plan(without(BASE, "lan", "ssh", "debian"), prune=True)
    ops = [(a.key.kind.short, a.operation) for a in plan.actions]
    assert ("network", "delete") in ops and ("securitygroup", "delete_sg") in ops
    assert precedes(plan, "vm/web:nic0:clean", "network/lan:delete:h1")
    assert precedes(plan, "vm/db:nic0:clean", "securitygroup/ssh:delete_sg:h1")
    assert precedes(plan, "vm/web:disk0:delete", "image/debian:delete:h1")


@pytest.mark.parametrize(
    ("texts", "verb"),
    [
        pytest.param((BASE,), "destroy", id="pruned"),
        pytest.param((BASE, vm(**{**PROTECTED, "image: debian": "image: alpine"})), "replace", id="replaced"),
    ],
)
def test_prevent_destroy_fails_the_plan_naming_the_resource(texts: tuple[str, ...], verb: str) -> None:
    world = converge(BASE, vm(**PROTECTED))
    with pytest.raises(PlanError) as error:
        world.plan(*texts, prune=True)
    assert error.value.problems == [f"vm/web: lifecycle.preventDestroy is set, and this plan would {verb} it"]


def test_prevent_destroy_allows_updates() -> None:
    world = converge(BASE, vm(**PROTECTED))
    plan = world.plan(BASE, vm(**{**PROTECTED, "vcpu: 2": "vcpu: 3"}))
    assert change_of(plan, "vm/web").type is ChangeType.UPDATE


def test_resource_of_another_stack_is_refused(world: World) -> None:
    records = dict(world.records)
    records[WEB] = dataclasses.replace(records[WEB], stack="other")
    with pytest.raises(PlanError) as error:
        world.plan(BASE, vm(), vm("db"), records=records)
    assert error.value.problems[0] == "vm/web: belongs to stack 'other'; nebctl never touches another stack's objects"
    assert all(problem.startswith("vm/web: ") for problem in error.value.problems)


def test_another_stacks_resource_is_never_pruned(world: World) -> None:
    records = dict(world.records)
    records[WEB] = dataclasses.replace(records[WEB], stack="other")
    plan = world.plan(BASE, vm("db"), records=records, prune=True)
    assert WEB not in {c.key for c in plan.changes}
    assert not plan.has_changes


def test_interrupted_delete_is_finished_without_prune(world: World) -> None:
    records = dict(world.records)
    records[WEB] = dataclasses.replace(records[WEB], status="deleting")
    plan = world.plan(BASE, vm("db"), records=records)
    change = change_of(plan, "vm/web")
    assert change.type is ChangeType.DELETE and change.reason == "finishing an interrupted delete"


def test_interrupted_create_is_resumed(world: World) -> None:
    records = dict(world.records)
    records[WEB] = dataclasses.replace(records[WEB], applied=None, status="creating")
    plan = world.plan(BASE, vm(), vm("db"), records=records)
    change = change_of(plan, "vm/web")
    assert change.type is ChangeType.CREATE and change.reason == "resuming an interrupted create"


def test_interrupted_update_with_nothing_left_to_do_is_finished_on_the_record(world: World) -> None:
    records = dict(world.records)
    records[WEB] = dataclasses.replace(records[WEB], status="updating")
    plan = world.plan(BASE, vm(), vm("db"), records=records)
    change = change_of(plan, "vm/web")
    assert change.type is ChangeType.UPDATE and change.record_only
    assert change.reason == "finishing an interrupted update"
    assert [a for a in plan.actions if a.key == WEB] == []
    assert change_of(plan, "vm/db").type is ChangeType.NOOP


# --- drift ------------------------------------------------------------------------------------------------


def test_vm_stopped_outside_is_started(world: World) -> None:
    plan = world.with_vm(WEB, state=VMLiveState.STOPPED).plan()
    change = change_of(plan, "vm/web")
    assert change.type is ChangeType.UPDATE and not change.restart
    assert change.drift == (DriftItem(WEB, "was stopped", "it will be started"),)
    assert operations(plan) == ["deploy", "post"]  # a started VM gets its NICs finished
    assert plan.drift == ()


def test_vm_suspended_outside_is_resumed(world: World) -> None:
    plan = world.with_vm(WEB, state=VMLiveState.SUSPENDED).plan()
    assert change_of(plan, "vm/web").drift == (DriftItem(WEB, "was suspended", "it will be resumed"),)
    assert operations(plan) == ["resume"]


def test_vm_deleted_outside_is_created_again(world: World) -> None:
    plan = world.with_vm(WEB, gone=True).plan()
    change = change_of(plan, "vm/web")
    assert change.type is ChangeType.CREATE and change.reason == "deleted outside nebctl"
    assert change.drift == (DriftItem(WEB, "was deleted outside nebctl", "it will be created again"),)
    assert operations(plan) == ["clone", "pre", "deploy", "post"]
    # The same address as before: the lease is sticky through the re-creation.
    pre = next(a for a in plan.actions if a.operation == "pre")
    assert pre.params["ip"] == world.records[WEB].applied["nics"][0]["ip"]  # type: ignore[index]


def test_vm_memory_changed_outside_is_restored_with_a_restart(world: World) -> None:
    plan = world.with_vm(WEB, memory=1 * GiB).plan()
    change = change_of(plan, "vm/web")
    assert change.type is ChangeType.UPDATE and change.restart
    assert [(f.path, f.before, f.after, f.effect) for f in change.fields] == [
        ("memory", 1 * GiB, 2 * GiB, Effect.RESTART)
    ]
    assert change.drift == (DriftItem(WEB, "memory was changed to 1Gi", "it will be restored (restart)"),)
    assert operations(plan) == ["shutdown", "deploy", "post"]


def test_vm_moved_outside_is_moved_back(world: World) -> None:
    uuid = world.records[WEB].live["uuid"]
    live = dataclasses.replace(world.live, vm_hosts={**world.live.vm_hosts, uuid: "h2"})
    plan = world.plan(live=live)
    change = change_of(plan, "vm/web")
    assert change.drift == (DriftItem(WEB, "was moved to host h2", "it will be moved back to h1"),)
    # Back to h1: its NIC prepared there first, the migration, then the NIC released on h2.
    assert [(a.operation, a.host, a.params.get("source")) for a in plan.actions] == [
        ("pre", "h1", None),
        ("migrate", "h1", "h2"),
        ("clean", "h2", None),
    ]


def test_host_not_answering_leaves_its_vms_alone_and_reports_it(world: World) -> None:
    plan = world.with_host("h1", HostLiveState.ERROR).plan()
    assert not plan.has_changes and plan.actions == ()
    assert {item.key for item in plan.drift} == {key("vm/web"), key("vm/db")}
    assert all(item.correction is None and "h1 is not answering" in item.message for item in plan.drift)


def test_drift_and_manifest_change_together(world: World) -> None:
    plan = world.with_vm(WEB, state=VMLiveState.STOPPED).plan(BASE, vm(**{"vcpu: 2": "vcpu: 4"}), vm("db"))
    change = change_of(plan, "vm/web")
    assert change.restart and change.drift
    # Already stopped: no shutdown, the deploy starts it with the new size.
    assert operations(plan, "vm/web") == ["deploy", "post"]
