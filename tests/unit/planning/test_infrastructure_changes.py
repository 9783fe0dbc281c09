"""Decision table of hosts, datastores, images, networks and security groups, and how their changes order the
actions of the VMs that use them."""

from __future__ import annotations

import networkx as nx
import pytest

from nebctl.controller.planning import PlanError
from nebctl.core.fields import Effect
from nebctl.core.plans import ChangeType
from tests.unit.planning.world import (
    BASE,
    World,
    actions_of,
    change_of,
    converge,
    key,
    operations,
    precedes,
    probe,
    vm,
    without,
)

H3 = """
apiVersion: nebctl/v1
kind: Host
metadata: {name: h3}
spec: {uri: "sim://h3"}
"""


@pytest.fixture(scope="module")
def world() -> World:
    return converge(BASE, vm())


@pytest.mark.parametrize(
    ("old", "new", "resource", "change_type", "effect", "expected"),
    [
        pytest.param(
            "ports: [22]",
            "ports: [22, 2222]",
            "securitygroup/ssh",
            ChangeType.UPDATE,
            Effect.IN_PLACE,
            ["update_sg", "update_sg"],
            id="sg-rules-in-place-on-every-host",
        ),
        pytest.param(
            "/images/alpine.qcow2",
            "/images/alpine-2.qcow2",
            "image/alpine",
            ChangeType.REPLACE,
            Effect.REPLACE,
            ["delete", "delete", "import_image", "import_image"],
            id="unused-image-source-replaces",
        ),
        pytest.param(
            'spec: {uri: "sim://h2"}',
            'spec: {uri: "sim://h2", labels: {zone: b}}',
            "host/h2",
            ChangeType.UPDATE,
            Effect.NONE,
            [],
            id="host-labels-record-only",
        ),
        pytest.param(
            'spec: {uri: "sim://h2"}',
            'spec: {uri: "sim://h2", enabled: false}',
            "host/h2",
            ChangeType.UPDATE,
            Effect.NONE,
            [],
            id="host-drain-record-only",
        ),
    ],
)
def test_infrastructure_edit(
    world: World, old: str, new: str, resource: str, change_type: ChangeType, effect: Effect, expected: list[str]
) -> None:
    assert old in BASE
    plan = world.plan(BASE.replace(old, new), vm())
    change = change_of(plan, resource)
    assert change.type is change_type
    assert {f.effect for f in change.fields} == {effect}
    assert operations(plan, resource) == expected
    assert sorted({a.host for a in actions_of(plan, resource) if a.host is not None}) == (
        ["h1", "h2"] if expected else []
    )


def test_only_the_changed_field_is_listed(world: World) -> None:
    plan = world.plan(BASE.replace('spec: {uri: "sim://h2"}', 'spec: {uri: "sim://h2", labels: {zone: b}}'), vm())
    assert [(f.path, f.before, f.after) for f in change_of(plan, "host/h2").fields] == [("labels.zone", None, "b")]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        pytest.param(
            "sim://h2",
            "sim://h2-new",
            "host/h2: uri cannot change (a host's URI is its identity; remove the host and add a new one)",
            id="uri",
        ),
        pytest.param(
            "path: /var/lib/ds/local",
            "path: /srv/ds",
            "datastore/local: path cannot change (the volumes would be stranded; declare a new datastore instead)",
            id="datastore-path",
        ),
    ],
)
def test_immutable_fields_are_refused(world: World, old: str, new: str, message: str) -> None:
    with pytest.raises(PlanError) as error:
        world.plan(BASE.replace(old, new), vm())
    assert error.value.problems == [message]


def test_image_used_as_backing_file_cannot_be_replaced(world: World) -> None:
    with pytest.raises(PlanError) as error:
        world.plan(BASE.replace("/images/debian.qcow2", "/images/debian-2.qcow2"), vm())
    assert error.value.problems == [
        "image/debian: cannot be replaced or deleted while vm/web uses it as a backing file"
        " (replace or delete the VM too)"
    ]


def test_image_of_a_full_clone_may_be_replaced() -> None:
    world = converge(BASE, vm(**{"image: debian, size: 10Gi": "image: debian, size: 10Gi, clone: full"}))
    plan = world.plan(
        BASE.replace("/images/debian.qcow2", "/images/debian-2.qcow2"),
        vm(**{"image: debian, size: 10Gi": "image: debian, size: 10Gi, clone: full"}),
    )
    assert change_of(plan, "image/debian").type is ChangeType.REPLACE
    assert not change_of(plan, "vm/web").is_change


def test_adding_a_host_extends_every_spanning_resource_to_it(world: World) -> None:
    live = type(world.live)(
        hosts={**world.live.hosts, "h3": probe("h3")}, vms=world.live.vms, vm_hosts=world.live.vm_hosts
    )
    plan = world.plan(BASE, H3, vm(), live=live)
    assert change_of(plan, "host/h3").type is ChangeType.CREATE
    for resource, operation in [
        ("datastore/local", "create_datastore"),
        ("image/debian", "import_image"),
        ("image/alpine", "import_image"),
        ("network/lan", "create"),
        ("securitygroup/ssh", "update_sg"),
    ]:
        change = change_of(plan, resource)
        assert change.type is ChangeType.UPDATE
        assert [(f.path, f.after) for f in change.fields] == [("hosts[2]", "h3")]
        assert [(a.operation, a.host) for a in actions_of(plan, resource)] == [(operation, "h3")]
    assert not change_of(plan, "vm/web").is_change
    # On the new host: the pool before the image import, the host probe before both.
    assert precedes(plan, "host/h3:probe_host", "datastore/local:create_datastore:h3")
    assert precedes(plan, "datastore/local:create_datastore:h3", "image/debian:import_image:h3")


def test_removing_a_host_from_the_manifests_shrinks_the_spans(world: World) -> None:
    # The VM is on h1: h2 can go, and the shared resources leave it.
    plan = world.plan(without(BASE, "h2"), vm(), prune=True)
    assert change_of(plan, "host/h2").type is ChangeType.DELETE
    network = change_of(plan, "network/lan")
    assert network.type is ChangeType.UPDATE
    assert [(a.operation, a.host) for a in actions_of(plan, "network/lan")] == [("delete", "h2")]


def test_network_replaced_under_a_vm_restarts_it_around_the_replacement(world: World) -> None:
    # A new address plan: the VM's lease moves to the new range, so the VM must release its NIC before the old
    # network goes, and prepare it again once the new one exists.
    plan = world.plan(BASE.replace("10.0.0", "10.1.0"), vm())
    assert change_of(plan, "network/lan").type is ChangeType.REPLACE
    vm_change = change_of(plan, "vm/web")
    assert vm_change.type is ChangeType.UPDATE and vm_change.restart
    assert [(f.path, f.after) for f in vm_change.fields] == [("nics[0].ip", "10.1.0.10")]
    assert nx.is_directed_acyclic_graph(plan.graph())
    assert precedes(plan, "vm/web:shutdown", "vm/web:old:nic0:clean")
    assert precedes(plan, "vm/web:old:nic0:clean", "network/lan:delete:h1")
    assert precedes(plan, "network/lan:create:new:h1", "vm/web:nic0:pre")
    assert precedes(plan, "vm/web:nic0:pre", "vm/web:deploy")


def test_network_and_vm_replaced_together(world: World) -> None:
    plan = world.plan(BASE.replace("10.0.0", "10.1.0"), vm(**{"image: debian": "image: alpine"}))
    assert change_of(plan, "vm/web").type is ChangeType.REPLACE
    assert nx.is_directed_acyclic_graph(plan.graph())
    assert precedes(plan, "vm/web:undeploy", "network/lan:delete:h1")
    assert precedes(plan, "network/lan:create:new:h1", "vm/web:new:nic0:pre")


def test_security_group_rules_update_does_not_touch_the_vms(world: World) -> None:
    plan = world.plan(BASE.replace("ports: [22]", "ports: [22, 2222]"), vm())
    assert {a.key.kind.short for a in plan.actions} == {"securitygroup"}
    assert {a.params == {} for a in plan.actions} == {True}


def test_new_vm_waits_for_everything_it_uses_on_its_host() -> None:
    world = converge(BASE)
    plan = world.plan(BASE, vm())
    assert operations(plan) == ["clone", "pre", "deploy", "post"]
    empty = converge(without(BASE, "local", "debian", "alpine", "lan", "ssh"))
    plan = empty.plan(BASE, vm())
    for before, after in [
        ("datastore/local:create_datastore:h1", "image/debian:import_image:h1"),
        ("image/debian:import_image:h1", "vm/web:disk0:clone"),
        ("network/lan:create:h1", "vm/web:nic0:pre"),
        ("securitygroup/ssh:update_sg:h1", "vm/web:nic0:pre"),
        ("vm/web:disk0:clone", "vm/web:deploy"),
        ("vm/web:nic0:pre", "vm/web:deploy"),
        ("vm/web:deploy", "vm/web:nic0:post"),
    ]:
        assert precedes(plan, before, after), (before, after)
    # Nothing on h2 holds up a VM on h1.
    assert not precedes(plan, "image/debian:import_image:h2", "vm/web:disk0:clone")


def test_image_may_go_with_the_last_disk_cloned_from_it(world: World) -> None:
    # Found by the property tests: the VM stays but drops the disk backed by the image, so the image is free
    # once that disk is deleted.
    plan = world.plan(
        without(BASE, "debian"), vm(**{"disks:\n    - {image: debian, size: 10Gi}": "disks: []"}), prune=True
    )
    assert change_of(plan, "image/debian").type is ChangeType.DELETE
    assert change_of(plan, "vm/web").type is ChangeType.UPDATE
    assert precedes(plan, "vm/web:disk0:delete", "image/debian:delete:h1")


def test_image_backing_a_disk_kept_by_an_excluded_update_cannot_go(world: World) -> None:
    with pytest.raises(PlanError) as error:
        world.plan(
            without(BASE, "debian"),
            vm(**{"disks:\n    - {image: debian, size: 10Gi}": "disks: []"}),
            prune=True,
            excludes=frozenset({key("vm/web")}),
        )
    assert error.value.problems[0].startswith("image/debian: cannot be replaced or deleted while vm/web uses it")


def test_network_replaced_under_a_vm_that_keeps_its_nic_is_refused(world: World) -> None:
    # Same address plan, another mode: the VM's spec does not change, so nothing would re-attach its NIC to the
    # new network; the plan must not delete the network under it.
    with pytest.raises(PlanError) as error:
        world.plan(BASE.replace("mode: nat", "mode: isolated"), vm())
    assert error.value.problems == [
        "network/lan: cannot be replaced or deleted while vm/web is attached to it"
        " (nics[0]; replace the VM or remove the NIC too)"
    ]


def test_network_replaced_with_the_vm_moving_off_it_is_allowed(world: World) -> None:
    backend = "apiVersion: nebctl/v1\nkind: Network\nmetadata: {name: back}\nspec: {mode: isolated, cidr: 10.5.0.0/24}"
    plan = world.plan(
        BASE.replace("mode: nat", "mode: isolated"),
        backend,
        vm(**{"- {network: lan, securityGroups: [ssh]}": "- {network: back}"}),
    )
    assert change_of(plan, "network/lan").type is ChangeType.REPLACE
    assert precedes(plan, "vm/web:old:nic0:clean", "network/lan:delete:h1")


def test_network_range_change_replaces_it_on_every_host() -> None:
    world = converge(BASE)
    plan = world.plan(BASE.replace("last: 10.0.0.20", "last: 10.0.0.30"))
    change = change_of(plan, "network/lan")
    assert change.type is ChangeType.REPLACE
    assert [(f.path, f.effect) for f in change.fields] == [("range.last", Effect.REPLACE)]
    assert operations(plan, "network/lan") == ["delete", "create", "delete", "create"]
    assert precedes(plan, "network/lan:delete:h1", "network/lan:create:new:h1")


def test_network_cannot_leave_the_host_of_a_vm_attached_to_it(world: World) -> None:
    # vm/web runs on h1: the network may leave h2, not h1.
    plan = world.plan(BASE.replace("cidr: 10.0.0.0/24,", "hosts: [h1], cidr: 10.0.0.0/24,"), vm())
    assert [(a.operation, a.host) for a in actions_of(plan, "network/lan")] == [("delete", "h2")]
    with pytest.raises(PlanError) as error:
        world.plan(BASE.replace("cidr: 10.0.0.0/24,", "hosts: [h2], cidr: 10.0.0.0/24,"), vm())
    assert error.value.problems == [
        "network/lan: cannot leave host h1 while vm/web uses it there (move or delete the VM first)"
    ]


def test_datastore_leaving_a_host_takes_its_images_and_must_not_strand_disks(world: World) -> None:
    with pytest.raises(PlanError) as error:
        world.plan(BASE.replace("path: /var/lib/ds/local}", "path: /var/lib/ds/local, hosts: [h2]}"), vm())
    assert {
        "datastore/local: cannot leave host h1 while vm/web uses it there (move or delete the VM first)",
        "image/debian: cannot leave host h1 while vm/web uses it there (move or delete the VM first)",
        "vm/web: disks[0]: datastore/local is not available on host h1",
    } == set(error.value.problems)
