"""Objects of the spanned kinds changed outside nebctl: each listed object's fingerprint against the applied spec.

The fingerprints a host's listing gives are written here by hand, as a driver would read them off the live
objects; the planner turns a difference into drift on that host and a repair of that host only. The spellings
(``drivers.fingerprints``) are checked against hand-written tables first, since both sides rely on them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from nebctl.core.plans import ChangeType
from nebctl.drivers import fingerprints
from nebctl.drivers.types import SecurityRuleDefinition
from nebctl.reconcilers.base import LiveView
from nebctl.reconcilers.spanned import fingerprint_changes
from tests.unit.planning.world import BASE, World, actions_of, change_of, converge, precedes, vm

# What the hosts hold after BASE was applied, as a driver lists it (by hand from BASE).
LAN = {"mode": "nat", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1", "range": "10.0.0.10-10.0.0.20"}
SSH = {"rules": "in tcp 22 0.0.0.0/0"}
LOCAL = {"type": "dir", "path": "/var/lib/ds/local"}
AS_APPLIED: dict[tuple[str, str], Mapping[str, str]] = {
    ("network", "lan"): LAN,
    ("filter", "nebctl-sg-ssh"): SSH,
    ("pool", "local"): LOCAL,
}

IMAGES = frozenset({("volume", "image-debian"), ("volume", "image-alpine")})


@pytest.mark.parametrize(
    ("expected", "seen", "changes"),
    [
        ({"cidr": "10.0.0.0/24"}, {"cidr": "10.0.0.0/24"}, []),
        ({"cidr": "10.0.0.0/24"}, {"cidr": "10.9.0.0/24"}, [("cidr", "10.0.0.0/24", "10.9.0.0/24")]),
        ({"cidr": "10.0.0.0/24", "mode": "nat"}, {"cidr": "10.0.0.0/24"}, []),  # the driver did not read the mode
        ({"cidr": "10.0.0.0/24"}, {"cidr": "10.0.0.0/24", "bridge": "br0"}, []),  # nor does the spec say a bridge
        (
            {"range": "a-b", "cidr": "x", "mode": "nat"},
            {"range": "a-c", "cidr": "y", "mode": "nat"},
            [("cidr", "x", "y"), ("range", "a-b", "a-c")],
        ),
    ],
)
def test_fingerprint_changes(
    expected: dict[str, str], seen: dict[str, str], changes: list[tuple[str, str, str]]
) -> None:
    assert fingerprint_changes(expected, seen) == changes


@pytest.mark.parametrize(
    ("rules", "entries"),
    [
        (
            [SecurityRuleDefinition("in", "tcp", ("22", "8000-8080"))],
            ["in tcp 22 0.0.0.0/0", "in tcp 8000-8080 0.0.0.0/0"],
        ),
        ([SecurityRuleDefinition("in", "udp", ("53-53",), "10.1.2.3/8")], ["in udp 53 10.0.0.0/8"]),
        ([SecurityRuleDefinition("out", "any")], ["out any all 0.0.0.0/0"]),
        ([SecurityRuleDefinition("in", "icmp", ("22",))], ["in icmp all 0.0.0.0/0"]),  # ports only for tcp, udp
        ([SecurityRuleDefinition("out", "all")], ["out any all 0.0.0.0/0"]),  # libvirt's word for any
        ([], []),
    ],
)
def test_rule_entries(rules: list[SecurityRuleDefinition], entries: list[str]) -> None:
    assert fingerprints.rule_entries(rules) == entries


def test_fingerprint_spellings() -> None:
    assert fingerprints.of_rules([]) == {"rules": "none"}
    assert fingerprints.of_pool(type="dir", path="/srv/pool/") == {"type": "dir", "path": "/srv/pool"}
    assert fingerprints.of_volume(format="qcow2", capacity=3 * 1024**3) == {"format": "qcow2", "size": "3Gi"}


def listed(world: World, changed: Mapping[str, Mapping[tuple[str, str], Mapping[str, str]]]) -> World:
    """``world`` whose hosts h1 and h2 were listed, each holding BASE's objects as applied but for ``changed``."""
    prints = {host: {**AS_APPLIED, **changed.get(host, {})} for host in ("h1", "h2")}
    # The image volumes are listed without a fingerprint, as a driver that cannot read one lists them.
    objects = {host: frozenset(prints[host]) | IMAGES for host in prints}
    live = LiveView(
        hosts=world.live.hosts, vms=world.live.vms, vm_hosts=world.live.vm_hosts, objects=objects, fingerprints=prints
    )
    return dataclasses.replace(world, live=live)


@pytest.fixture(scope="module")
def world() -> World:
    return converge(BASE, vm())


def test_objects_as_applied_plan_nothing(world: World) -> None:
    assert not listed(world, {}).plan().has_changes


def test_a_network_changed_on_one_host_is_created_again_there_only(world: World) -> None:
    plan = listed(world, {"h2": {("network", "lan"): {**LAN, "cidr": "10.9.0.0/24"}}}).plan()
    change = change_of(plan, "network/lan")
    assert change.type is ChangeType.UPDATE
    assert [(item.message, item.correction) for item in change.drift] == [
        (
            "network lan was changed outside nebctl on h2: cidr 10.0.0.0/24 -> 10.9.0.0/24",
            "it will be deleted and created again there",
        )
    ]
    assert sorted(action.id for action in actions_of(plan, "network/lan")) == [
        "network/lan:create:h2",
        "network/lan:delete:h2",
    ]
    assert precedes(plan, "network/lan:delete:h2", "network/lan:create:h2")
    assert [c.key for c in plan.changes if c.is_change] == [change.key]


def test_a_security_group_changed_on_one_host_is_updated_there_in_place(world: World) -> None:
    plan = listed(world, {"h1": {("filter", "nebctl-sg-ssh"): {"rules": "in tcp 2222 0.0.0.0/0"}}}).plan()
    change = change_of(plan, "securitygroup/ssh")
    assert [(item.message, item.correction) for item in change.drift] == [
        (
            "filter nebctl-sg-ssh was changed outside nebctl on h1: rules in tcp 22 0.0.0.0/0 -> in tcp 2222 0.0.0.0/0",
            "its rules will be set again there",
        )
    ]
    assert [action.id for action in actions_of(plan, "securitygroup/ssh")] == ["securitygroup/ssh:update_sg:h1"]


def test_a_datastore_changed_on_both_hosts_is_defined_again_on_both(world: World) -> None:
    moved = {("pool", "local"): {"type": "dir", "path": "/elsewhere"}}
    plan = listed(world, {"h1": moved, "h2": moved}).plan()
    change = change_of(plan, "datastore/local")
    assert change.type is ChangeType.UPDATE  # not a create: the pools are there, only not as applied
    assert [item.message for item in change.drift] == [
        f"pool local was changed outside nebctl on {host}: path /var/lib/ds/local -> /elsewhere"
        for host in ("h1", "h2")
    ]
    assert sorted(action.id for action in actions_of(plan, "datastore/local")) == [
        "datastore/local:create_datastore:h1",
        "datastore/local:create_datastore:h2",
    ]


def test_an_image_volume_is_compared_with_what_its_import_recorded(world: World) -> None:
    key = next(k for k in world.records if str(k) == "image/debian")
    imported = dataclasses.replace(world.records[key], live={"format": "qcow2", "size": 2 * 1024**3})
    records = {**world.records, key: imported}
    as_imported = {("volume", "image-debian"): {"format": "qcow2", "size": "2Gi"}}
    same = listed(dataclasses.replace(world, records=records), {"h1": as_imported, "h2": as_imported})
    assert not same.plan().has_changes
    other = {("volume", "image-debian"): {"format": "raw", "size": "2Gi"}}
    plan = listed(dataclasses.replace(world, records=records), {"h1": as_imported, "h2": other}).plan()
    assert [item.message for item in change_of(plan, "image/debian").drift] == [
        "volume image-debian was changed outside nebctl on h2: format qcow2 -> raw"
    ]
    assert sorted(action.id for action in actions_of(plan, "image/debian")) == [
        "image/debian:delete:h2",
        "image/debian:import_image:h2",
    ]


def test_a_host_not_listed_or_listed_without_fingerprints_is_judged_by_presence_only(world: World) -> None:
    changed = listed(world, {"h2": {("network", "lan"): {**LAN, "mode": "isolated"}}})
    unlisted = dataclasses.replace(
        changed.live, objects={"h1": changed.live.objects["h1"]}, fingerprints={"h1": changed.live.fingerprints["h1"]}
    )
    assert not dataclasses.replace(changed, live=unlisted).plan().has_changes
    bare = dataclasses.replace(changed.live, fingerprints={})
    assert not dataclasses.replace(changed, live=bare).plan().has_changes


def test_a_changed_network_on_a_host_the_manifests_drop_is_deleted_there(world: World) -> None:
    moved = listed(world, {"h2": {("network", "lan"): {**LAN, "gateway": "10.0.0.254"}}})
    text = BASE.replace("spec: {mode: nat,", "spec: {hosts: [h1], mode: nat,")
    plan = moved.plan(text, vm())
    assert [action.id for action in actions_of(plan, "network/lan")] == ["network/lan:delete:h2"]


# Objects changed on h1, where vm/web runs with its NIC on lan and its disk an overlay of debian: only deleting
# and creating them again would repair them there. (what changed, the VM's disk line, whether the repair is
# refused, and how vm/web holds it), written out by hand.
OVERLAY, FULL = "{image: debian, size: 10Gi}", "{image: debian, size: 10Gi, clone: full}"
HELD = [
    (("network", "lan"), {**LAN, "cidr": "10.9.0.0/24"}, OVERLAY, "network/lan", "is attached to it (nics[0])"),
    (("volume", "image-debian"), {"format": "raw", "size": "2Gi"}, OVERLAY, "image/debian",
     "uses it as the backing file of disks[0]"),
    (("volume", "image-debian"), {"format": "raw", "size": "2Gi"}, FULL, "image/debian", None),  # a copy: not held
]  # fmt: skip


@pytest.mark.parametrize(("thing", "seen", "disk", "address", "held"), HELD)
def test_a_repair_under_a_vm_that_holds_the_object_is_refused_at_plan_time(
    thing: tuple[str, str], seen: Mapping[str, str], disk: str, address: str, held: str | None
) -> None:
    base = converge(BASE, vm(**{OVERLAY: disk}))
    key = next(k for k in base.records if str(k) == "image/debian")
    imported = dataclasses.replace(base.records[key], live={"format": "qcow2", "size": 2 * 1024**3})
    base = dataclasses.replace(base, records={**base.records, key: imported})
    as_imported = {("volume", "image-debian"): {"format": "qcow2", "size": "2Gi"}}
    changed = listed(base, {"h1": {**as_imported, thing: seen}, "h2": as_imported})
    plan = changed.plan(BASE, vm(**{OVERLAY: disk}))
    if held is None:
        assert sorted(str(action.host) for action in actions_of(plan, address)) == ["h1", "h1"]  # delete, create again
        assert plan.drift == ()
        return
    assert actions_of(plan, address) == []
    assert not change_of(plan, address).is_change
    assert not plan.has_changes
    [item] = plan.drift
    assert item.host == "h1" and str(item.key) == address
    assert item.correction == (
        f"nebctl cannot repair it there while vm/web {held}: it would have to be deleted and created again. Put it "
        "back as applied by hand, or move that VM off h1 (or delete it), then apply again"
    )
    # Deleting the VM in the same plan frees it: the repair follows the VM's deletion.
    pruned = changed.plan(BASE, prune=True)
    ids = [action.id for action in actions_of(pruned, address)]
    assert len(ids) == 2 and all(identifier.endswith(":h1") for identifier in ids)
    assert all(precedes(pruned, "vm/web:undeploy", identifier) for identifier in ids)
    assert pruned.drift == ()


# Labels of each spanned kind changed (the line of BASE, its substitute), and the actions each must give: the
# ownership written again on both hosts, unless the change already redefines the object there (a group's rules).
RELABELLED = [
    ("metadata: {name: lan}", "metadata: {name: lan, labels: {zone: dmz}}",
     ["network/lan:own:h1", "network/lan:own:h2"]),
    ("metadata: {name: ssh}", "metadata: {name: ssh, annotations: {note: x}}",
     ["securitygroup/ssh:own:h1", "securitygroup/ssh:own:h2"]),
    ("metadata: {name: ssh}\nspec:\n  rules:\n    - {direction: in, protocol: tcp, ports: [22]}",
     "metadata: {name: ssh, labels: {a: b}}\nspec:\n  rules:\n    - {direction: in, protocol: tcp, ports: [2222]}",
     ["securitygroup/ssh:update_sg:h1", "securitygroup/ssh:update_sg:h2"]),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "expected"), RELABELLED)
def test_labels_of_a_spanned_kind_are_written_on_its_objects(
    world: World, old: str, new: str, expected: list[str]
) -> None:
    assert BASE.count(old) == 1, old
    plan = world.plan(BASE.replace(old, new), vm())
    assert sorted(action.id for action in plan.actions) == expected
    assert all(action.family.value == "monitoring" for action in plan.actions if action.operation == "own")
