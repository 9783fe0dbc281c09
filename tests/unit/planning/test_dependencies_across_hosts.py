"""Decision table of ``dependsOn`` between resources on different hosts: the dependency orders every action of
the two resources wherever each lives, when they are built and when they are destroyed, and the plan's JSON
and DOT documents show the edge."""

from __future__ import annotations

import pytest

from nebctl.core.keys import ResourceKey
from nebctl.rendering.document import render_json
from nebctl.rendering.graph import dot_id, render_dot
from tests.unit.planning.world import BASE, World, actions_of, converge, precedes, vm, without

DB = vm("db")  # on h1
CACHE = vm("cache", **{"placement: {host: h1}": "placement: {host: h2}\n  dependsOn: [vm/db]"})


@pytest.fixture(scope="module")
def empty() -> World:
    return converge(without(BASE, "local", "debian", "alpine", "lan", "ssh"))


def test_a_vm_is_built_only_after_the_vm_it_depends_on_on_another_host(empty: World) -> None:
    plan = empty.plan(BASE, DB, CACHE)
    db, cache = actions_of(plan, "vm/db"), actions_of(plan, "vm/cache")
    assert {a.host for a in db} == {"h1"} and {a.host for a in cache} == {"h2"}
    # Every action of cache-1 waits for every action of db (its deploy and its NICs' post step included).
    for before in db:
        for after in cache:
            assert precedes(plan, before.id, after.id), (before.id, after.id)
    # The dependency is one way.
    assert not any(precedes(plan, after.id, before.id) for before in db for after in cache)


def test_the_edge_is_in_the_json_and_dot_documents(empty: World) -> None:
    plan = empty.plan(BASE, DB, CACHE)
    document = render_json(plan)
    needs = {action["id"]: set(action["depends_on"]) for action in document["actions"]}
    # Written out by hand: the entry actions of cache (its disk clone and NIC preparation) after db's last.
    for entry in ("vm/cache:disk0:clone", "vm/cache:nic0:pre"):
        assert "vm/db:nic0:post" in needs[entry], needs[entry]
    dot = render_dot(plan)
    assert f"{dot_id('vm/db:nic0:post')} -> {dot_id('vm/cache:disk0:clone')}" in dot


def test_the_dependent_is_destroyed_first_on_whatever_host(empty: World) -> None:
    built = converge(BASE, DB, CACHE)
    plan = built.plan(BASE, prune=True)
    db, cache = actions_of(plan, "vm/db"), actions_of(plan, "vm/cache")
    assert db and cache
    for before in cache:
        for after in db:
            assert precedes(plan, before.id, after.id), (before.id, after.id)


def test_a_dependency_on_a_resource_of_every_host_waits_only_for_its_own_host(empty: World) -> None:
    # dependsOn a network that spans both hosts: the VM on h2 waits for the network on h2, not on h1 (a
    # network on every host of a big fleet would otherwise hold every VM back until it is everywhere).
    lonely = vm("cache", **{"placement: {host: h1}": "placement: {host: h2}\n  dependsOn: [network/lan]"})
    plan = empty.plan(BASE, lonely)
    assert precedes(plan, "network/lan:create:h2", "vm/cache:disk0:clone")
    assert not precedes(plan, "network/lan:create:h1", "vm/cache:disk0:clone")


def test_an_unchanged_dependency_orders_nothing(empty: World) -> None:
    built = converge(BASE, DB)
    plan = built.plan(BASE, DB, CACHE)
    assert not actions_of(plan, "vm/db")
    assert actions_of(plan, "vm/cache")
    assert ResourceKey.parse("vm/db") not in {a.key for a in plan.actions}
