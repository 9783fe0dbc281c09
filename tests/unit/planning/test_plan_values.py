"""The light values a plan holds: a created resource's fields listed when read, and the edges kept as
two lists of ids. Both must read exactly as the tuples they replace."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from nebctl.controller.planning import PlanRequest, make_plan, plan_with_specs
from nebctl.core.fields import AddedFields, added
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import ChangeType, Edges
from nebctl.reconcilers.catalogue import RECONCILERS
from nebctl.schemas.models import VirtualMachine
from tests.unit.planning.world import BASE, converge, documents, online, vm

SPEC = {
    "vcpu": 2,
    "disks": [{"image": "debian", "size": 10}, {"size": 1}],
    "cloudInit": {"userData": "secret"},
    "labels": {},
    "none": None,
}


def test_added_fields_read_as_the_tuple_they_replace() -> None:
    lazy = AddedFields(SPEC, ["cloudInit"])
    listed = tuple(added(SPEC, sensitive=["cloudInit"]))
    assert lazy == listed and listed == lazy
    assert tuple(lazy) == listed and list(lazy) == list(listed)
    assert len(lazy) == len(listed) == 6
    assert lazy[0] == listed[0] and lazy[-1] == listed[-1] and lazy[1:3] == listed[1:3]
    assert [field.path for field in lazy if field.sensitive] == ["cloudInit.userData"]
    assert lazy == AddedFields(dict(SPEC), ["cloudInit"])
    assert lazy != AddedFields(SPEC) and lazy != listed[:-1]
    assert repr(lazy) == repr(listed)
    assert AddedFields({}) == () and not AddedFields({})


def test_a_created_resource_lists_the_fields_of_its_resolved_spec() -> None:
    docs = documents(BASE, vm("web"))
    hosts = sorted(key.name for key in docs if key.kind is Kind.HOST)
    plan, specs = plan_with_specs(PlanRequest(stack="demo", documents=docs, records={}, live=online(hosts)))
    for change in plan.changes:
        assert change.type is ChangeType.CREATE
        sensitive = RECONCILERS[change.key.kind].sensitive
        assert change.fields == tuple(added(specs[change.key], sensitive=sensitive))
    web = next(change for change in plan.changes if change.key == ResourceKey.of(Kind.VIRTUAL_MACHINE, "web"))
    assert ("host", "h1") in [(field.path, field.after) for field in web.fields]


def test_edges_read_as_the_tuple_they_replace() -> None:
    pairs = (("a", "b"), ("a", "c"), ("b", "c"))
    edges = Edges.of(["a", "a", "b"], ["b", "c", "c"])
    assert edges == pairs and pairs == edges and edges == Edges(pairs)
    assert tuple(edges) == pairs and len(edges) == 3
    assert edges[1] == ("a", "c") and edges[-1] == ("b", "c") and edges[:2] == pairs[:2]
    assert ("b", "c") in edges and ("c", "a") not in edges
    assert edges != pairs[:2] and edges != Edges(reversed(pairs))
    assert repr(edges) == repr(pairs) and hash(edges) == hash(pairs)
    assert Edges() == ()
    with pytest.raises(ValueError):
        Edges.of(["a"], [])


def _no_repeated_edge(edges: Sequence[tuple[str, str]]) -> bool:
    return len(set(edges)) == len(edges)


def test_no_edge_is_listed_twice() -> None:
    created = converge(BASE, vm("web"), vm("db", **{"placement: {host: h1}": "placement: {host: h2}"}))
    replaced = created.plan(BASE, vm("web", **{"image: debian": "image: alpine"}), vm("db"), prune=True)
    assert any(change.type is ChangeType.REPLACE for change in replaced.changes)
    docs = documents(BASE, vm("web"), vm("db"))
    hosts = sorted(key.name for key in docs if key.kind is Kind.HOST)
    full = make_plan(PlanRequest(stack="demo", documents=docs, records={}, live=online(hosts)))
    # Both NICs of a new VM lease the addresses a deleted VM releases: each NIC links the same two resources.
    nic = "- {network: lan, securityGroups: [ssh]}"
    two_nics = {nic: nic + "\n    - {network: lan}"}
    moved = converge(BASE, vm("old", **two_nics)).plan(BASE, vm("new", **two_nics), prune=True)
    release = [a.id for a in moved.actions if a.operation == "clean"]
    prepare = [a.id for a in moved.actions if a.operation == "pre"]
    assert len(release) == len(prepare) == 2
    assert all((first, then) in moved.edges for first in release for then in prepare)
    for plan in (full, replaced, moved):
        assert plan.edges and _no_repeated_edge(plan.edges)


def test_a_resource_that_refers_to_itself_still_lists_each_edge_once() -> None:
    """Validation refuses it (a dependency cycle); the pure planner, given one anyway, deduplicates it all."""
    docs = documents(BASE)
    raw = {
        "apiVersion": "nebctl/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "loop"},
        "spec": {"memory": "1Gi", "disks": [{"size": "1Gi"}], "placement": {"host": "h1"}, "dependsOn": ["vm/loop"]},
    }
    docs[ResourceKey.of(Kind.VIRTUAL_MACHINE, "loop")] = VirtualMachine.model_validate(raw)
    plan = make_plan(PlanRequest(stack="demo", documents=docs, records={}, live=online(["h1", "h2"])))
    assert _no_repeated_edge(plan.edges)
    assert ("vm/loop:deploy", "vm/loop:disk0:clone") in plan.edges  # the self-reference, linked once


def test_a_resource_change_reads_back_from_a_pickle_with_every_field() -> None:
    import pickle

    from nebctl.core.fields import Effect, FieldChange
    from nebctl.core.plans import DriftItem, ResourceChange

    # Every field away from its default, so that a field left out of the pickle would come back as the default.
    change = ResourceChange(
        key=ResourceKey.of(Kind.VIRTUAL_MACHINE, "web"),
        type=ChangeType.REPLACE,
        fields=(FieldChange("spec.vcpu", 1, 2, Effect.REPLACE, sensitive=True, why="the size"),),
        restart=True,
        host="h2",
        previous_host="h1",
        reason="resuming an interrupted create",
        drift=(DriftItem(ResourceKey.of(Kind.VIRTUAL_MACHINE, "web"), "was stopped", "it will be started", "h2"),),
        unchanged=7,
        create_first=True,
        record_only=True,
    )
    again = pickle.loads(pickle.dumps(change, protocol=pickle.HIGHEST_PROTOCOL))
    assert again == change
    assert type(again) is ResourceChange and [getattr(again, name) for name in ResourceChange._fields] == [
        change.key,
        ChangeType.REPLACE,
        change.fields,
        True,
        "h2",
        "h1",
        "resuming an interrupted create",
        change.drift,
        7,
        True,
        True,
    ]
