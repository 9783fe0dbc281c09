"""--target and --exclude, IP leases, placement through the planner, and determinism of the whole plan."""

from __future__ import annotations

import dataclasses
import pickle
import random
from typing import Any

import pytest

from nebctl.controller.planning import PlanError, PlanRequest, make_plan
from nebctl.controller.planning.fingerprint import fingerprint
from nebctl.core.plans import ChangeType
from nebctl.database.records import ResourceRecord
from tests.unit.planning.world import (
    BASE,
    World,
    actions_of,
    change_of,
    converge,
    documents,
    key,
    online,
    precedes,
    vm,
    without,
)

# A second network and an unrelated VM, so that selections have something to leave out.
BACKEND = """
apiVersion: nebctl/v1
kind: Network
metadata: {name: backend}
spec: {mode: isolated, cidr: 10.9.0.0/24}
"""
OTHER = """
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {name: batch}
spec:
  memory: 1Gi
  disks: [{size: 1Gi}]
  nics: [{network: backend}]
  placement: {host: h2}
"""


def changed(plan_keys: object) -> list[str]:
    assert hasattr(plan_keys, "changes")
    return sorted(str(c.key) for c in plan_keys.changes if c.is_change)


# --- --target / --exclude ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hosts_only() -> World:
    return converge(without(BASE, "local", "debian", "alpine", "lan", "ssh"))


def test_target_brings_what_it_depends_on(hosts_only: World) -> None:
    plan = hosts_only.plan(BASE, BACKEND, vm(), OTHER, targets=frozenset({key("vm/web")}))
    # The hosts exist already; the VM's image, datastore, network and group come with it; batch and backend
    # and the unused image do not.
    assert changed(plan) == ["datastore/local", "image/debian", "network/lan", "securitygroup/ssh", "vm/web"]


def test_target_of_an_infrastructure_resource_leaves_its_users(hosts_only: World) -> None:
    plan = hosts_only.plan(BASE, BACKEND, vm(), OTHER, targets=frozenset({key("network/lan")}))
    assert changed(plan) == ["network/lan"]


def test_exclude_takes_its_dependents_with_it(hosts_only: World) -> None:
    plan = hosts_only.plan(BASE, BACKEND, vm(), OTHER, excludes=frozenset({key("network/lan")}))
    assert "vm/web" not in changed(plan) and "network/lan" not in changed(plan)
    assert {"vm/batch", "network/backend", "image/debian"} <= set(changed(plan))


def test_target_and_exclude_together(hosts_only: World) -> None:
    plan = hosts_only.plan(
        BASE, BACKEND, vm(), OTHER, targets=frozenset({key("vm/web")}), excludes=frozenset({key("image/debian")})
    )
    assert changed(plan) == ["datastore/local", "network/lan", "securitygroup/ssh"]


def test_target_of_a_pruned_resource(hosts_only: World) -> None:
    world = converge(BASE, vm(), vm("db"))
    plan = world.plan(BASE, prune=True, targets=frozenset({key("vm/db")}))
    assert changed(plan) == ["vm/db"] and change_of(plan, "vm/db").type is ChangeType.DELETE


# --- leases -----------------------------------------------------------------------------------------------


def nic_ip(plan_or_world: object, name: str, index: int = 0) -> str:
    if isinstance(plan_or_world, World):
        applied = plan_or_world.records[key(f"vm/{name}")].applied
        assert applied is not None
        return str(applied["nics"][index]["ip"])
    pre = [a for a in actions_of(plan_or_world, f"vm/{name}") if a.operation == "pre"]  # type: ignore[arg-type]
    return str(pre[index].params["ip"])


def test_leases_are_the_lowest_free_addresses_in_name_order(hosts_only: World) -> None:
    plan = hosts_only.plan(BASE, vm("c"), vm("a"), vm("b"))
    assert [nic_ip(plan, n) for n in ("a", "b", "c")] == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]


def test_static_addresses_are_avoided_by_leases(hosts_only: World) -> None:
    static = {"- {network: lan, securityGroups: [ssh]}": "- {network: lan, ip: 10.0.0.10}"}
    plan = hosts_only.plan(BASE, vm("a"), vm("z", **static))
    assert (nic_ip(plan, "a"), nic_ip(plan, "z")) == ("10.0.0.11", "10.0.0.10")


def test_leases_are_sticky() -> None:
    world = converge(BASE, vm("b"), vm("c"))
    assert (nic_ip(world, "b"), nic_ip(world, "c")) == ("10.0.0.10", "10.0.0.11")
    # A new VM that sorts first takes a free address; it does not reshuffle those already leased.
    plan = world.plan(BASE, vm("a"), vm("b"), vm("c"))
    assert changed(plan) == ["vm/a"] and nic_ip(plan, "a") == "10.0.0.12"


def test_addresses_of_a_pruned_vm_are_free_again_only_with_prune() -> None:
    world = converge(BASE, vm("a"))
    plan = world.plan(BASE, vm("b"), prune=True)
    assert nic_ip(plan, "b") == "10.0.0.10"
    plan = world.plan(BASE, vm("b"))
    assert nic_ip(plan, "b") == "10.0.0.11"


def test_exhausted_range_is_an_error(hosts_only: World) -> None:
    names = [f"vm{i:02d}" for i in range(12)]  # the range holds 10.0.0.10 to 10.0.0.20: eleven addresses
    with pytest.raises(PlanError) as error:
        hosts_only.plan(BASE, *(vm(n) for n in names))
    assert error.value.problems == ["vm/vm11: nics[0]: no free address left in network/lan"]


# --- placement --------------------------------------------------------------------------------------------

ZONES = BASE.replace('spec: {uri: "sim://h1"}', 'spec: {uri: "sim://h1", labels: {zone: a}}').replace(
    'spec: {uri: "sim://h2"}', 'spec: {uri: "sim://h2", labels: {zone: b}}'
)
IN_ZONE_B = {"placement: {host: h1}": "placement: {requirements: \"labels.zone == 'b'\"}"}
HUGE = {"placement: {host: h1}": "placement: {policy: packing}", "memory: 2Gi": "memory: 400Gi"}


def test_fixed_host_and_requirements_place_the_vm() -> None:
    world = converge(ZONES)
    plan = world.plan(ZONES, vm("fixed"), vm("zoned", **IN_ZONE_B))
    assert (change_of(plan, "vm/fixed").host, change_of(plan, "vm/zoned").host) == ("h1", "h2")
    assert {a.host for a in actions_of(plan, "vm/zoned")} == {"h2"}


def test_vm_that_fits_nowhere_names_every_host() -> None:
    world = converge(ZONES)
    with pytest.raises(PlanError) as error:
        world.plan(ZONES, vm("huge", **HUGE))
    # Both hosts refuse it for the same reason: said once, with the most either has free.
    assert error.value.problems == [
        "vm/huge: fits on no host: 2 hosts have at most 256Gi free memory, 400Gi needed (h1, h2)"
    ]
    # The long form (diff -v) names every host with its own figures.
    assert error.value.details[0] == "vm/huge: fits on no host:"
    assert error.value.details[1].startswith("  h1: needs 400Gi memory, ") and error.value.details[2].startswith(
        "  h2: "
    )


def test_placement_is_sticky_while_the_vm_fits() -> None:
    world = converge(ZONES, vm("zoned", **IN_ZONE_B))
    assert world.records[key("vm/zoned")].host == "h2"
    plan = world.plan(ZONES, vm("zoned", **IN_ZONE_B), vm("other", **IN_ZONE_B))
    assert not change_of(plan, "vm/zoned").is_change


# --- determinism ------------------------------------------------------------------------------------------


def _shuffled(request: PlanRequest, seed: int) -> PlanRequest:
    rng = random.Random(seed)
    docs = list(request.documents.items())
    records = list(request.records.items())
    rng.shuffle(docs)
    rng.shuffle(records)
    return dataclasses.replace(request, documents=dict(docs), records=dict(records))


@pytest.mark.parametrize("seed", range(5))
def test_same_input_same_plan_whatever_the_order(seed: int) -> None:
    world = converge(BASE, vm("a"), vm("b"))
    docs = documents(BASE, BACKEND, vm("a", **{"vcpu: 2": "vcpu: 3"}), vm("c"), OTHER)
    request = world.request(docs, prune=True)
    reference = make_plan(request)
    again = make_plan(_shuffled(request, seed))
    assert again.fingerprint == reference.fingerprint
    assert again.actions == reference.actions
    assert again.edges == reference.edges
    assert again.changes == reference.changes


def test_a_pickled_plan_carries_its_fingerprint_once_computed_never_what_it_is_computed_from() -> None:
    world = converge(BASE, vm("a"))
    request = world.request(documents(BASE, vm("a", **{"vcpu: 2": "vcpu: 3"})))
    plan = make_plan(request)
    unknown = pickle.loads(pickle.dumps(plan))  # before anything read its fingerprint: written without
    assert plan.has_fingerprint and not unknown.has_fingerprint and unknown.changes == plan.changes
    with pytest.raises(LookupError, match="without its fingerprint"):
        unknown.fingerprint  # noqa: B018
    assert len(plan.fingerprint) == 64
    data = pickle.dumps(plan)
    assert b"PlanRequest" not in data and b"nebctl.schemas.models" not in data  # no request, no manifest inside
    again = pickle.loads(data)
    assert again.has_fingerprint and again.fingerprint == plan.fingerprint == make_plan(request).fingerprint
    assert pickle.loads(pickle.dumps(again)).fingerprint == plan.fingerprint


def test_fingerprint_moves_with_the_live_state() -> None:
    world = converge(BASE, vm("a"))
    before = make_plan(world.request()).fingerprint
    assert make_plan(world.request(live=online(["h1", "h2"]))).fingerprint != before


def test_fingerprint_moves_with_every_part_of_each_record_and_each_vm() -> None:
    world = converge(BASE, vm("a"))
    plain = world.request()
    key, other = [k for k, r in plain.records.items() if r.applied is not None][:2]
    # One record as the database gives them, with the digest of its applied spec; another without one.
    first, second = plain.records[key], plain.records[other]
    assert isinstance(first, ResourceRecord) and isinstance(second, ResourceRecord)
    hashed = dataclasses.replace(first, applied_hash="a" * 64)
    request = dataclasses.replace(plain, records={**plain.records, key: hashed})
    before = fingerprint(request)
    assert fingerprint(dataclasses.replace(request, records=dict(request.records))) == before
    unhashed = second
    uuid, status = next(iter(request.live.vms.items()))
    vms, vm_hosts = request.live.vms, request.live.vm_hosts
    moved: list[dict[str, Any]] = [
        {"records": {**request.records, key: dataclasses.replace(hashed, status="failed")}},
        {"records": {**request.records, key: dataclasses.replace(hashed, applied_hash="0" * 64)}},
        {"records": {**request.records, key: dataclasses.replace(hashed, stack="other")}},
        {"records": {**request.records, other: dataclasses.replace(unhashed, applied={"changed": 1})}},
        {"live": dataclasses.replace(request.live, vms={**vms, uuid: dataclasses.replace(status, vcpu=9)})},
        {"live": dataclasses.replace(request.live, vms={**vms, uuid: dataclasses.replace(status, memory=1)})},
        {"live": dataclasses.replace(request.live, vm_hosts={**vm_hosts, uuid: "elsewhere"})},
    ]
    prints = [fingerprint(dataclasses.replace(request, **change)) for change in moved]
    assert before not in prints and len(set(prints)) == len(prints)


def test_static_address_taken_from_a_sticky_lease_moves_the_lease() -> None:
    world = converge(BASE, vm("a"))
    assert nic_ip(world, "a") == "10.0.0.10"
    static = {"- {network: lan, securityGroups: [ssh]}": "- {network: lan, ip: 10.0.0.10}"}
    plan = world.plan(BASE, vm("a"), vm("b", **static))
    # Two NICs must never share an address: the static one wins, the lease moves to the next free address.
    assert nic_ip(plan, "b") == "10.0.0.10"
    change = change_of(plan, "vm/a")
    assert [(f.path, f.before, f.after) for f in change.fields] == [("nics[0].ip", "10.0.0.10", "10.0.0.11")]


def test_many_leases_fill_the_range_in_order(hosts_only: World) -> None:
    # The lease cursor: leasing does not rescan the range, and still gives the lowest free addresses.
    static = {"- {network: lan, securityGroups: [ssh]}": "- {network: lan, ip: 10.0.0.12}"}
    plan = hosts_only.plan(BASE, *(vm(f"v{i}") for i in range(5)), vm("s", **static))
    assert [nic_ip(plan, f"v{i}") for i in range(5)] == [
        "10.0.0.10",
        "10.0.0.11",
        "10.0.0.13",
        "10.0.0.14",
        "10.0.0.15",
    ]


def test_address_released_by_a_pruned_vm_is_prepared_again_only_after_its_release() -> None:
    # Found by the property tests: the new VM got the pruned VM's address, and its NIC could be prepared
    # while the network still held the old lease.
    world = converge(BASE, vm("a"))
    plan = world.plan(BASE, vm("b", **{"host: h1": "host: h2"}), prune=True)
    assert nic_ip(plan, "b") == "10.0.0.10"
    assert precedes(plan, "vm/a:nic0:clean", "vm/b:nic0:pre")


@pytest.mark.parametrize(
    "edit",
    [{"memory: 2Gi": "memory: 2Gi\n  cloudInit: {userData: one}"}, {"vcpu: 2": "vcpu: 3"}],
    ids=["secret", "vcpu"],
)
def test_fingerprint_moves_with_the_manifests(edit: dict[str, str]) -> None:
    base = {"memory: 2Gi": "memory: 2Gi\n  cloudInit: {userData: two}"}
    world = converge(BASE, vm("a", **base))
    reference = world.plan(BASE, vm("a", **base)).fingerprint
    assert world.plan(BASE, vm("a", **base)).fingerprint == reference
    # A changed secret moves it too, although it never prints.
    assert world.plan(BASE, vm("a", **{**base, **edit})).fingerprint != reference
