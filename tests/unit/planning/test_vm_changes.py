"""Decision table of virtual machines: each manifest edit gives its change type, restart flag and driver actions.

Every row starts from the same converged world (hosts, datastore, images, network, security group and one
running VM ``web`` fixed on ``h1``), edits the manifests, and checks what ``make_plan`` decides.
"""

from __future__ import annotations

import dataclasses

import pytest

from nebctl.controller.planning import PlanError, plan_with_specs
from nebctl.core.fields import Effect
from nebctl.core.plans import ChangeType
from nebctl.reconcilers.identity import deposed_key
from nebctl.reconcilers.vm import deposition
from tests.unit.planning.world import (
    BASE,
    GiB,
    World,
    actions_of,
    applied,
    change_of,
    colliding_long_names,
    converge,
    documents,
    operations,
    precedes,
    vm,
)
from tests.unit.planning.world import (
    key as key_of,
)

STOPPED = {"memory: 2Gi": "memory: 2Gi\n  state: stopped"}
SUSPENDED = {"memory: 2Gi": "memory: 2Gi\n  state: suspended"}
TWO_DISKS = {"- {image: debian, size: 10Gi}": "- {image: debian, size: 10Gi}\n    - {size: 1Gi}"}
TWO_NICS = {"- {network: lan, securityGroups: [ssh]}": "- {network: lan, securityGroups: [ssh]}\n    - {network: lan}"}
NO_NICS = {"nics:\n    - {network: lan, securityGroups: [ssh]}": "nics: []"}
DIRECT_BOOT = {"memory: 2Gi": "memory: 2Gi\n  boot: {kernel: /boot/vmlinuz, cmdline: root=/dev/vda1}"}
NO_DISKS = {"disks:\n    - {image: debian, size: 10Gi}": "disks: []"}


@pytest.fixture(scope="module")
def running() -> World:
    return converge(BASE, vm())


# (edit of the VM document, expected change type, restart, the VM's operations in order)
TABLE = [
    pytest.param({"vcpu: 2": "vcpu: 4"}, ChangeType.UPDATE, True, ["shutdown", "deploy", "post"], id="vcpu"),
    pytest.param({"memory: 2Gi": "memory: 4Gi"}, ChangeType.UPDATE, True, ["shutdown", "deploy", "post"], id="memory"),
    pytest.param(
        {"size: 10Gi": "size: 20Gi"}, ChangeType.UPDATE, True, ["shutdown", "resize", "deploy", "post"], id="disk-grow"
    ),
    pytest.param(STOPPED, ChangeType.UPDATE, False, ["shutdown"], id="running-to-stopped"),
    pytest.param(SUSPENDED, ChangeType.UPDATE, False, ["suspend"], id="running-to-suspended"),
    pytest.param(
        {"image: debian": "image: alpine"},
        ChangeType.REPLACE,
        False,
        ["undeploy", "delete", "clean", "clone", "pre", "deploy", "post"],
        id="disk-image",
    ),
    pytest.param(
        {"memory: 2Gi": "memory: 2Gi\n  cloudInit: {userData: secret-data}"},
        ChangeType.REPLACE,
        False,
        ["undeploy", "delete", "clean", "clone", "pre", "deploy", "post"],
        id="cloud-init",
    ),
    pytest.param(DIRECT_BOOT, ChangeType.UPDATE, True, ["shutdown", "deploy", "post"], id="direct-kernel-boot"),
    pytest.param(TWO_DISKS, ChangeType.UPDATE, True, ["shutdown", "clone", "deploy", "post"], id="add-disk"),
    pytest.param(NO_DISKS, ChangeType.UPDATE, True, ["shutdown", "delete", "deploy", "post"], id="remove-disk"),
    pytest.param(TWO_NICS, ChangeType.UPDATE, True, ["shutdown", "pre", "deploy", "post", "post"], id="add-nic"),
    pytest.param(NO_NICS, ChangeType.UPDATE, True, ["shutdown", "clean", "deploy"], id="remove-nic"),
    pytest.param(
        {"host: h1": "host: h2"}, ChangeType.UPDATE, False, ["pre", "migrate", "clean"], id="fixed-host-moves"
    ),
    # Fields no driver acts on: only the VM's ownership is written again (what ``recover`` rebuilds the record from).
    pytest.param({"app: web": "app: db"}, ChangeType.UPDATE, False, ["own"], id="metadata-labels-ownership-only"),
    pytest.param(
        {"labels: {app: web}": "labels: {app: web}, annotations: {owner: ops}"},
        ChangeType.UPDATE,
        False,
        ["own"],
        id="metadata-annotations-ownership-only",
    ),
    pytest.param(
        {"memory: 2Gi": "memory: 2Gi\n  lifecycle: {preventDestroy: true}"},
        ChangeType.UPDATE,
        False,
        ["own"],
        id="lifecycle-is-ownership-only",
    ),
    pytest.param(
        {"memory: 2Gi": "memory: 2Gi\n  dependsOn: [network/lan]"}, ChangeType.UPDATE, False, ["own"], id="depends-on"
    ),
]


@pytest.mark.parametrize(("edit", "change_type", "restart", "expected"), TABLE)
def test_vm_edit(
    running: World, edit: dict[str, str], change_type: ChangeType, restart: bool, expected: list[str]
) -> None:
    plan = running.plan(BASE, vm(**edit))
    change = change_of(plan, "vm/web")
    assert change.type is change_type
    assert change.restart is restart
    assert operations(plan, "vm/web") == expected
    # Only the VM changes: its surroundings are untouched by a VM edit.
    assert [str(c.key) for c in plan.changes if c.is_change] == ([] if change_type is ChangeType.NOOP else ["vm/web"])


def test_the_deploy_after_a_boot_change_carries_the_kernel_and_command_line(running: World) -> None:
    plan = running.plan(BASE, vm(**DIRECT_BOOT))
    [deploy] = [a for a in actions_of(plan, "vm/web") if a.operation == "deploy"]
    assert deploy.params["boot"] == {"kernel": "/boot/vmlinuz", "initrd": None, "cmdline": "root=/dev/vda1"}
    # Without boot settings the deploy has no such parameter: plans of VMs that boot from disk are as before.
    unchanged = running.plan(BASE, vm(**{"memory: 2Gi": "memory: 4Gi"}))
    [deploy] = [a for a in actions_of(unchanged, "vm/web") if a.operation == "deploy"]
    assert "boot" not in deploy.params


@pytest.mark.parametrize(("start", "live"), [({}, True), (STOPPED, False), (SUSPENDED, False)])
def test_a_running_vm_migrates_live_and_a_stopped_or_suspended_one_cold(start: dict[str, str], live: bool) -> None:
    world = converge(BASE, vm(**start))
    plan = world.plan(BASE, vm(**start, **{"host: h1": "host: h2"}))
    pre, migrate, clean = actions_of(plan, "vm/web")
    assert (migrate.operation, migrate.host, migrate.params["source"], migrate.params["live"]) == (
        "migrate",
        "h2",
        "h1",
        live,
    )
    # The NIC's address is reserved (and its filters defined) on the target before the VM arrives, and released
    # on the source after it has left: the same MAC and address on both sides.
    assert (pre.operation, pre.host, clean.operation, clean.host) == ("pre", "h2", "clean", "h1")
    assert pre.params["mac"] == clean.params["mac"] and pre.params["ip"] == clean.params["ip"] is not None
    assert precedes(plan, pre.id, migrate.id) and precedes(plan, migrate.id, clean.id)


CREATE_FIRST = {"memory: 2Gi": "memory: 2Gi\n  lifecycle: {createBeforeDestroy: true}"}
NEW_IMAGE = {"image: debian": "image: alpine"}


@pytest.fixture(scope="module")
def create_first() -> World:
    return converge(BASE, vm(**CREATE_FIRST))


def test_create_before_destroy_builds_the_new_vm_then_deletes_the_deposed_old_one(create_first: World) -> None:
    plan = create_first.plan(BASE, vm(**CREATE_FIRST, **NEW_IMAGE))
    change = change_of(plan, "vm/web")
    assert (change.type, change.create_first) == (ChangeType.REPLACE, True)
    assert operations(plan, "vm/web") == ["clone", "pre", "deploy", "post"]
    old = change_of(plan, "vm/web~0")
    assert (old.type, old.reason) == (ChangeType.DELETE, "the old VM of vm/web, deleted once its replacement runs")
    assert sorted(operations(plan, "vm/web~0")) == ["clean", "delete", "undeploy"]
    # Nothing of the old VM goes before the new one runs, its NICs finished.
    for new_action in ("vm/web:deploy", "vm/web:nic0:post"):
        assert all(precedes(plan, new_action, a.id) for a in actions_of(plan, "vm/web~0"))
    assert (plan.summary.add, plan.summary.change, plan.summary.destroy) == (1, 0, 1)
    assert plan.warnings == ()


def test_the_new_vm_of_a_create_first_replacement_has_identities_and_addresses_of_its_own(
    create_first: World,
) -> None:
    request = create_first.request(documents(BASE, vm(**CREATE_FIRST, **NEW_IMAGE)))
    plan, specs = plan_with_specs(request)
    web = key_of("vm/web")
    old, new = create_first.records[web].applied, specs[web]
    assert old is not None
    deploy = {a.operation: a for a in actions_of(plan, "vm/web")}["deploy"]
    assert [d["volume"] for d in deploy.params["disks"]] == ["web~1-disk0"]
    assert new["nics"][0]["mac"] != old["nics"][0]["mac"]
    assert new["nics"][0]["ip"] != old["nics"][0]["ip"]  # the old VM keeps its address until it goes
    deleted = {a.operation: a for a in actions_of(plan, "vm/web~0")}
    assert deleted["delete"].params["volume"] == "web-disk0"
    assert (deleted["clean"].params["mac"], deleted["clean"].params["ip"]) == (
        old["nics"][0]["mac"],
        old["nics"][0]["ip"],
    )


def test_after_a_create_first_replacement_the_vm_is_converged_and_the_next_one_makes_incarnation_2(
    create_first: World,
) -> None:
    replaced = applied(create_first.request(documents(BASE, vm(**CREATE_FIRST, **NEW_IMAGE))))
    assert replaced.records[key_of("vm/web")].live["incarnation"] == 1
    assert key_of("vm/web~0") not in replaced.records
    assert not replaced.plan(BASE, vm(**CREATE_FIRST, **NEW_IMAGE)).has_changes
    again = replaced.plan(BASE, vm(**CREATE_FIRST, **{"image: debian": "image: debian"}))
    assert change_of(again, "vm/web").create_first
    assert [str(c.key) for c in again.changes if c.is_change] == ["vm/web", "vm/web~1"]
    deploy = {a.operation: a for a in actions_of(again, "vm/web")}["deploy"]
    assert deploy.params["disks"][0]["volume"] == "web~2-disk0"


def test_a_replacement_without_create_before_destroy_still_deletes_first(running: World) -> None:
    plan = running.plan(BASE, vm(**NEW_IMAGE))
    assert not change_of(plan, "vm/web").create_first
    assert operations(plan, "vm/web")[:2] == ["undeploy", "delete"]
    assert [str(c.key) for c in plan.changes if c.is_change] == ["vm/web"]


def test_create_first_is_refused_when_the_new_vm_would_need_the_old_ones_static_address() -> None:
    static = {**CREATE_FIRST, "{network: lan, securityGroups: [ssh]}": "{network: lan, ip: 10.0.0.15}"}
    world = converge(BASE, vm(**static))
    with pytest.raises(PlanError) as raised:
        world.plan(BASE, vm(**static, **NEW_IMAGE))
    assert raised.value.problems == [
        "vm/web: nics[0].ip 10.0.0.15 is held by vm/web~0, the VM it replaces, until the new VM runs"
        " (lifecycle.createBeforeDestroy); give the new VM another address, or drop createBeforeDestroy"
    ]
    # Another static address is fine: both VMs hold their own.
    moved = {**CREATE_FIRST, "{network: lan, securityGroups: [ssh]}": "{network: lan, ip: 10.0.0.16}"}
    assert change_of(world.plan(BASE, vm(**moved, **NEW_IMAGE)), "vm/web").create_first


def test_create_first_is_refused_when_no_host_has_room_for_both_vms(create_first: World) -> None:
    hosts = {name: dataclasses.replace(p, memory=3 * GiB) for name, p in create_first.live.hosts.items()}
    small = dataclasses.replace(create_first, live=dataclasses.replace(create_first.live, hosts=hosts))
    assert not small.plan(BASE, vm(**CREATE_FIRST)).has_changes  # one 2Gi VM fits a 3Gi host
    with pytest.raises(PlanError) as raised:
        small.plan(BASE, vm(**CREATE_FIRST, **NEW_IMAGE))
    [problem] = raised.value.problems
    assert problem.startswith("vm/web: fits on no host beside the VM it replaces (lifecycle.createBeforeDestroy)")


def test_create_first_is_refused_when_a_network_it_uses_is_replaced_too(create_first: World) -> None:
    renumbered = BASE.replace("cidr: 10.0.0.0/24, range: {first: 10.0.0.10, last: 10.0.0.20}",
                              "cidr: 10.1.0.0/24, range: {first: 10.1.0.10, last: 10.1.0.20}")  # fmt: skip
    with pytest.raises(PlanError) as raised:
        create_first.plan(renumbered, vm(**CREATE_FIRST, **NEW_IMAGE))
    assert raised.value.problems == [
        "vm/web: lifecycle.createBeforeDestroy cannot be honoured: network/lan, which both the old and the new VM"
        " use, is replaced by this plan (deleted, then created), so the old VM would have to go before the new"
        " one is created; drop createBeforeDestroy for this change"
    ]


def test_create_first_is_refused_when_the_new_vm_would_take_an_address_its_old_ones_dependency_releases() -> None:
    # web depends on db; db goes, and the new web is given the address db releases (the range's first). db may go
    # only once the old web has gone, which waits for the new web, which waits for db's address: no order runs.
    depending = {**CREATE_FIRST, "placement: {host: h1}": "placement: {host: h1}\n  dependsOn: [vm/db]"}
    world = converge(BASE, vm("db"), vm(**depending))
    applied = world.records[key_of("vm/db")].applied
    assert applied is not None and applied["nics"][0]["ip"] == "10.0.0.10"
    with pytest.raises(PlanError) as raised:
        world.plan(BASE, vm(**CREATE_FIRST, **NEW_IMAGE), prune=True)
    assert raised.value.problems == [
        "vm/web: lifecycle.createBeforeDestroy cannot be honoured: the new VM would have to wait for what waits for"
        " the old VM to go (an address or a resource the old VM's dependencies release), so neither could ever"
        " start; drop createBeforeDestroy for this change"
    ]
    # Without createBeforeDestroy the old web goes first, then db; the new web keeps the old one's address.
    plan = world.plan(BASE, vm(**NEW_IMAGE), prune=True)
    assert precedes(plan, "vm/web:undeploy", "vm/db:undeploy")
    assert [a.params["ip"] for a in actions_of(plan, "vm/web") if a.operation == "pre"] == ["10.0.0.11"]


def test_an_interrupted_create_first_replacement_finishes_the_new_vm_then_deletes_the_old_one(
    create_first: World,
) -> None:
    web = key_of("vm/web")
    record = create_first.records[web]
    deposed, deposed_live, successor_live = deposition(web, record.live)
    records = dict(create_first.records)
    records[deposed] = dataclasses.replace(record, name=deposed.name, status="deleting", live=deposed_live)
    records[web] = dataclasses.replace(record, applied=None, status="creating", live=successor_live)
    first = create_first.plan(BASE, vm(**CREATE_FIRST, **NEW_IMAGE))
    resumed = create_first.plan(BASE, vm(**CREATE_FIRST, **NEW_IMAGE), records=records)
    assert change_of(resumed, "vm/web").type is ChangeType.CREATE
    assert change_of(resumed, "vm/web~0").type is ChangeType.DELETE
    # The same actions as the plan that was interrupted: same identities, addresses and order.
    assert [(a.id, dict(a.params)) for a in resumed.actions] == [(a.id, dict(a.params)) for a in first.actions]
    assert set(resumed.edges) == set(first.edges)
    # Without the manifests' VM, and with --prune, both go, and neither waits for the other.
    pruned = create_first.plan(BASE, records=records, prune=True)
    assert {str(c.key) for c in pruned.changes if c.is_change} == {"vm/web", "vm/web~0"}


def test_targeting_a_create_first_vm_takes_its_old_vm_along(create_first: World) -> None:
    plan = create_first.plan(BASE, vm(**CREATE_FIRST, **NEW_IMAGE), targets=frozenset({key_of("vm/web")}))
    assert [str(c.key) for c in plan.changes if c.is_change] == ["vm/web", "vm/web~0"]


def test_a_deposed_name_fits_the_database_column() -> None:
    long_name = "a" * 63
    key = deposed_key(key_of(f"vm/{long_name}"), 12)
    assert len(key.name) == 63 and key.name.endswith("~12")
    assert deposed_key(key_of("vm/web"), 0).name == "web~0"
    assert deposed_key(key_of(f"vm/{long_name[:-1]}b"), 12) != key  # a digest keeps shortened names apart


def test_names_that_shorten_alike_get_deposed_keys_of_their_own() -> None:
    first, second = colliding_long_names()
    assert deposed_key(key_of(f"vm/{first}"), 0) == deposed_key(key_of(f"vm/{second}"), 0)
    taken = {deposed_key(key_of(f"vm/{first}"), 0)}
    other = deposed_key(key_of(f"vm/{second}"), 0, taken)
    assert other not in taken and len(other.name) == 63 and other.name.endswith("~0")
    assert other.name.startswith(second[:54])
    # Both replaced create-first in one plan: each old VM is deposed under a key of its own, and again so on
    # the next plan (the same keys: a resumed apply deletes what this one deposed).
    texts = [vm(name, **CREATE_FIRST) for name in (first, second)]
    world = converge(BASE, *texts)
    replaced = [vm(name, **CREATE_FIRST, **NEW_IMAGE) for name in (first, second)]
    plan = world.plan(BASE, *replaced)
    deposed = [c.key for c in plan.changes if c.type is ChangeType.DELETE]
    assert len(deposed) == 2 and len(set(deposed)) == 2, deposed
    assert [c.key for c in world.plan(BASE, *replaced).changes if c.type is ChangeType.DELETE] == deposed


def test_label_change_lists_the_label_and_records_it(running: World) -> None:
    relabelled = vm(**{"app: web": "app: db"})
    request = running.request(documents(BASE, relabelled))
    plan, specs = plan_with_specs(request)
    change = change_of(plan, "vm/web")
    assert [(f.path, f.before, f.after, f.effect) for f in change.fields] == [
        ("metadata.labels.app", "web", "db", Effect.NONE)
    ]
    # What the apply records as applied carries the new labels, so the next plan has nothing to do.
    assert specs[change.key]["metadata"] == {"labels": {"app": "db"}}
    after = applied(request)
    assert not [c for c in after.plan(BASE, relabelled).changes if c.is_change]
    assert change_of(after.plan(BASE, vm()), "vm/web").type is ChangeType.UPDATE


def test_labels_removed_is_a_change_and_unlabelled_records_stay_converged(running: World) -> None:
    change = change_of(running.plan(BASE, vm(**{"labels: {app: web}": "labels: {}"})), "vm/web")
    assert change.type is ChangeType.UPDATE
    assert [(f.path, f.before, f.after) for f in change.fields] == [("metadata.labels.app", "web", None)]
    # A resource without labels records no metadata at all: records written before labels were recorded
    # still compare equal.
    bare = converge(BASE, vm(**{"labels: {app: web}": "labels: {}"}))
    assert all("metadata" not in record.applied for record in bare.records.values() if record.applied)
    assert not [c for c in bare.plan(BASE, vm(**{"labels: {app: web}": "labels: {}"})).changes if c.is_change]


def test_ignore_changes_covers_labels(running: World) -> None:
    edit = {"app: web": "app: db", "memory: 2Gi": "memory: 2Gi\n  lifecycle: {ignoreChanges: [metadata.labels]}"}
    change = change_of(running.plan(BASE, vm(**edit)), "vm/web")
    assert [f.path for f in change.fields] == ["lifecycle.ignoreChanges[0]"]


@pytest.mark.parametrize(
    ("start", "target", "expected"),
    [
        pytest.param(STOPPED, {}, ["deploy", "post"], id="stopped-to-running"),
        pytest.param(SUSPENDED, {}, ["resume"], id="suspended-to-running"),
        pytest.param(SUSPENDED, STOPPED, ["shutdown"], id="suspended-to-stopped"),
        pytest.param(STOPPED, SUSPENDED, ["deploy", "post", "suspend"], id="stopped-to-suspended"),
    ],
)
def test_vm_state_changes_back(start: dict[str, str], target: dict[str, str], expected: list[str]) -> None:
    world = converge(BASE, vm(**start))
    plan = world.plan(BASE, vm(**target))
    change = change_of(plan, "vm/web")
    assert change.type is ChangeType.UPDATE and not change.restart
    assert operations(plan, "vm/web") == expected
    deploys = [a for a in actions_of(plan, "vm/web") if a.operation == "deploy"]
    assert all(a.params["start"] for a in deploys)


def test_restart_of_a_stopped_vm_does_not_shut_it_down() -> None:
    world = converge(BASE, vm(**STOPPED))
    plan = world.plan(BASE, vm(**{**STOPPED, "vcpu: 2": "vcpu: 4"}))
    # Redefined, not started: its NIC is finished only when it is started.
    assert operations(plan, "vm/web") == ["deploy"]
    deploy = next(a for a in actions_of(plan, "vm/web") if a.operation == "deploy")
    assert deploy.params["start"] is False and deploy.params["vcpu"] == 4


def test_restart_fields_and_the_deploy_carries_the_new_values(running: World) -> None:
    plan = running.plan(BASE, vm(**{"vcpu: 2": "vcpu: 4", "memory: 2Gi": "memory: 3Gi"}))
    change = change_of(plan, "vm/web")
    assert [(f.path, f.before, f.after, f.effect) for f in change.fields] == [
        ("memory", 2 * GiB, 3 * GiB, Effect.RESTART),
        ("vcpu", 2, 4, Effect.RESTART),
    ]
    deploy = next(a for a in actions_of(plan, "vm/web") if a.operation == "deploy")
    assert (deploy.params["vcpu"], deploy.params["memory"]) == (4, 3 * GiB)
    assert precedes(plan, "vm/web:shutdown", "vm/web:deploy")


def test_disk_grow_resizes_after_shutdown_before_deploy(running: World) -> None:
    plan = running.plan(BASE, vm(**{"size: 10Gi": "size: 20Gi"}))
    (resize,) = [a for a in actions_of(plan, "vm/web") if a.operation == "resize"]
    assert resize.params["size"] == 20 * GiB and resize.host == "h1"
    assert precedes(plan, "vm/web:shutdown", resize.id)
    assert precedes(plan, resize.id, "vm/web:deploy")


def test_disk_shrink_is_refused(running: World) -> None:
    with pytest.raises(PlanError) as error:
        running.plan(BASE, vm(**{"size: 10Gi": "size: 5Gi"}))
    assert error.value.problems == ["vm/web: disks[0].size cannot shrink from 10Gi to 5Gi (disks only grow)"]


def test_replace_deletes_before_it_creates(running: World) -> None:
    plan = running.plan(BASE, vm(**{"image: debian": "image: alpine"}))
    ids = {a.id for a in actions_of(plan, "vm/web")}
    assert {"vm/web:undeploy", "vm/web:new:deploy", "vm/web:new:disk0:clone"} <= ids
    for old in ("vm/web:undeploy", "vm/web:disk0:delete", "vm/web:nic0:clean"):
        assert precedes(plan, old, "vm/web:new:disk0:clone") or precedes(plan, old, "vm/web:new:nic0:pre")
        assert precedes(plan, old, "vm/web:new:deploy")
    clone = next(a for a in actions_of(plan, "vm/web") if a.id == "vm/web:new:disk0:clone")
    assert clone.params["backing"] == "image-alpine"
    assert plan.summary.add == 1 and plan.summary.destroy == 1


def test_cloud_init_change_is_sensitive_and_never_in_the_plan(running: World) -> None:
    plan = running.plan(BASE, vm(**{"memory: 2Gi": "memory: 2Gi\n  cloudInit: {userData: secret-data}"}))
    change = change_of(plan, "vm/web")
    # Only the field that was set: no null noise for the parts of the block that stay unset.
    assert [(f.path, f.sensitive) for f in change.fields] == [("cloudInit.userData", True)]
    assert "secret-data" not in repr(plan.actions)


def test_added_disk_is_cloned_with_its_datastore_and_attached_after_the_shutdown(running: World) -> None:
    plan = running.plan(BASE, vm(**TWO_DISKS))
    change = change_of(plan, "vm/web")
    assert {f.effect for f in change.fields} == {Effect.RESTART}
    clone = next(a for a in actions_of(plan, "vm/web") if a.operation == "clone")
    assert clone.params["disk"] == 1 and clone.params["backing"] is None and clone.params["size"] == GiB
    deploy = next(a for a in actions_of(plan, "vm/web") if a.operation == "deploy")
    assert [d["volume"] for d in deploy.params["disks"]] == ["web-disk0", "web-disk1"]
    assert precedes(plan, "vm/web:shutdown", clone.id) and precedes(plan, clone.id, deploy.id)


def test_removed_nic_is_released_only_after_the_shutdown(running: World) -> None:
    plan = running.plan(BASE, vm(**NO_NICS))
    assert precedes(plan, "vm/web:shutdown", "vm/web:nic0:clean")
    assert precedes(plan, "vm/web:nic0:clean", "vm/web:deploy")


def test_added_nic_gets_the_next_address_and_is_prepared_before_deploy(running: World) -> None:
    plan = running.plan(BASE, vm(**TWO_NICS))
    pre = next(a for a in actions_of(plan, "vm/web") if a.operation == "pre")
    assert (pre.params["nic"], pre.params["ip"]) == (1, "10.0.0.11")
    assert precedes(plan, "vm/web:shutdown", pre.id) and precedes(plan, pre.id, "vm/web:deploy")


def test_ignore_changes_hides_the_field() -> None:
    ignoring = {"memory: 2Gi": "memory: 2Gi\n  lifecycle: {ignoreChanges: [memory, 'disks[0].size']}"}
    world = converge(BASE, vm(**ignoring))
    edited = dict(ignoring)
    edited["memory: 2Gi"] = ignoring["memory: 2Gi"].replace("memory: 2Gi", "memory: 8Gi")
    plan = world.plan(BASE, vm(**edited, **{"size: 10Gi": "size: 30Gi"}))
    assert not plan.has_changes
    # What is not ignored still changes.
    plan = world.plan(BASE, vm(**edited, **{"vcpu: 2": "vcpu: 3"}))
    assert [f.path for f in change_of(plan, "vm/web").fields] == ["vcpu"]


def test_update_with_restart_of_a_suspended_vm_suspends_it_again() -> None:
    world = converge(BASE, vm(**SUSPENDED))
    plan = world.plan(BASE, vm(**{**SUSPENDED, "vcpu: 2": "vcpu: 4"}))
    assert operations(plan, "vm/web") == ["shutdown", "deploy", "post", "suspend"]


def test_smaller_disk_with_a_new_image_is_a_replacement_not_a_shrink(running: World) -> None:
    # Found by the property tests: the replaced VM's disks are created anew, nothing shrinks.
    plan = running.plan(BASE, vm(**{"image: debian, size: 10Gi": "image: alpine, size: 5Gi"}))
    change = change_of(plan, "vm/web")
    assert change.type is ChangeType.REPLACE
    clone = next(a for a in actions_of(plan, "vm/web") if a.operation == "clone")
    assert clone.params["size"] == 5 * GiB
