"""Property tests of the planner on the simulated fleet: random manifest sets and random edits of them.

For each example, a fresh sim fleet and SQLite store: apply a random manifest set with the ``Controller`` (real
sim driver, real store), check that planning again finds nothing to do, then apply a random edit of the set
(fields changed, resources added and removed, with prune) and check the same. Every plan on the way must be
an acyclic graph in which each action comes after what it needs.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import networkx as nx
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nebctl.controller.applying import Controller, PlanOptions
from nebctl.controller.planning import PlanError
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Action, Plan
from nebctl.core.settings import Settings
from nebctl.database.store import Store
from nebctl.drivers.registry import build_registry
from nebctl.reconcilers.identity import image_volume, live_name
from nebctl.schemas.loading import load_text

STACK = "props"
MiB = 1024**2
GiB = 1024**3

Model = dict[str, Any]  # {"hosts": [...], "images": {...}, "networks": {...}, "groups": [...], "vms": {...}}


# --- the random manifest sets -----------------------------------------------------------------------------


@st.composite
def vms(draw: st.DrawFn, model: Model, names: list[str]) -> dict[str, dict[str, Any]]:
    result = {}
    for name in names:
        disks = []
        for index in range(draw(st.integers(0, 2))):
            # The sim's images are 2Gi: a clone from one must not be smaller.
            if index == 0 and model["images"] and draw(st.booleans()):
                disks.append(
                    {
                        "image": draw(st.sampled_from(sorted(model["images"]))),
                        "size": draw(st.sampled_from([4, 8])) * GiB,
                    }
                )
            else:
                disks.append({"size": draw(st.sampled_from([1, 2])) * GiB})
        nics = []
        for _ in range(draw(st.integers(0, 2)) if model["networks"] else 0):
            nic: dict[str, Any] = {"network": draw(st.sampled_from(sorted(model["networks"])))}
            if model["groups"] and draw(st.booleans()):
                nic["securityGroups"] = [draw(st.sampled_from(model["groups"]))]
            nics.append(nic)
        placement: dict[str, Any] = (
            {"host": draw(st.sampled_from(model["hosts"]))}
            if draw(st.booleans())
            else {"policy": draw(st.sampled_from(["packing", "striping"]))}
        )
        result[name] = {
            "state": draw(st.sampled_from(["running", "stopped", "suspended"])),
            "vcpu": draw(st.integers(1, 4)),
            "memory": draw(st.sampled_from([256, 512, 1024])) * MiB,
            "disks": disks,
            "nics": nics,
            "placement": placement,
            LABELS: draw(LABEL_SETS),
        }
        if draw(st.integers(0, 2)):  # two VMs in three: their replacements are create-first
            result[name]["lifecycle"] = {"createBeforeDestroy": True}
        if draw(st.booleans()):
            result[name]["cloudInit"] = {"userData": "#cloud-config v1"}
        # Extra ordering on VMs drawn before this one (so never a cycle), and now and then on a network.
        earlier = [f"vm/{other}" for other in [*model.get("vms", {}), *result] if other != name]
        targets = earlier + [f"network/{n}" for n in sorted(model["networks"])]
        if targets and draw(st.integers(0, 2)) == 0:
            result[name]["dependsOn"] = sorted(set(draw(st.lists(st.sampled_from(targets), min_size=1, max_size=2))))
    return result


# A VM's labels travel in its model under this key (not a spec field); ``render`` moves them to the metadata.
LABELS = "(labels)"
LABEL_SETS = st.sampled_from([{}, {"tier": "web"}, {"tier": "db"}, {"tier": "web", "team": "a"}])


@st.composite
def manifest_sets(draw: st.DrawFn) -> Model:
    model: Model = {
        "hosts": [f"h{i}" for i in range(1, draw(st.integers(1, 3)) + 1)],
        "images": {f"img{i}": f"/images/img{i}.qcow2" for i in range(draw(st.integers(0, 2)))},
        "networks": {f"net{i}": f"10.{i}.0.0/24" for i in range(draw(st.integers(0, 2)))},
        "groups": ["ssh"] if draw(st.booleans()) else [],
    }
    model["vms"] = draw(vms(model, [f"vm{i}" for i in range(draw(st.integers(0, 4)))]))
    return model


@st.composite
def edits(draw: st.DrawFn, model: Model) -> Model:
    """A changed copy of ``model``: VMs edited, added or removed; images, networks and groups added or removed
    (a removed one is dropped from the VMs that used it, so the set stays valid); addresses re-planned."""
    new: Model = {
        "hosts": list(model["hosts"]),
        "images": dict(model["images"]),
        "networks": dict(model["networks"]),
        "groups": list(model["groups"]),
        "vms": {
            name: {**vm, "disks": [dict(d) for d in vm["disks"]], "nics": [dict(n) for n in vm["nics"]]}
            for name, vm in model["vms"].items()
        },
    }
    if draw(st.booleans()):
        new["hosts"].append(f"h{len(new['hosts']) + 1}")
    for name in sorted(new["images"]):
        if draw(st.integers(0, 4)) == 0:
            del new["images"][name]
    if draw(st.booleans()):
        new["images"]["img9"] = "/images/img9.qcow2"
    renumbered = set()
    for name in sorted(new["networks"]):
        choice = draw(st.integers(0, 4))
        if choice == 0:
            del new["networks"][name]
        elif choice == 1:  # a new address plan: the network is replaced and its VMs restart with new leases
            new["networks"][name] = new["networks"][name].replace(".0.0/24", ".128.0/24")
            renumbered.add(name)
    if draw(st.booleans()):
        new["networks"]["net9"] = "10.9.0.0/24"
    if new["groups"] and draw(st.integers(0, 3)) == 0:
        new["groups"] = []
    actions = {
        name: draw(st.sampled_from(["keep", "keep", "edit", "edit", "replace", "replace", "remove"]))
        for name in sorted(new["vms"])
    }
    # What this plan deletes and creates again: a create-first replacement cannot use any of it.
    recreated = {f"network/{n}" for n in renumbered} | {
        f"vm/{name}"
        for name, action in actions.items()
        if action == "replace" and not new["vms"][name].get("lifecycle", {}).get("createBeforeDestroy", False)
    }
    for name in sorted(new["vms"]):
        vm = new["vms"][name]
        action = actions[name]
        if action == "remove":
            del new["vms"][name]
            continue
        create_first = vm.get("lifecycle", {}).get("createBeforeDestroy", False)
        if create_first and set(vm.get("dependsOn", [])) & recreated:
            # Dropped, as a user would to make the plan possible: the VM may be replaced for other reasons (a
            # disk of a removed image dropped), and it cannot be create-first while depending on these.
            vm["dependsOn"] = [t for t in vm["dependsOn"] if t not in recreated]
        used = {f"network/{n['network']}" for n in vm["nics"]} | set(vm.get("dependsOn", []))
        # New cloud-init data forces a replacement; create-first, unless something the VM uses is replaced in
        # the same plan (a plan the planner refuses, with the reason: tests/unit/planning/test_vm_changes.py).
        if action == "replace" and not (create_first and used & recreated):
            vm["cloudInit"] = {"userData": f"#cloud-config {draw(st.sampled_from(['v2', 'v3']))}"}
        if action == "edit":
            vm["state"] = draw(st.sampled_from(["running", "stopped", "suspended"]))
            vm["vcpu"] = draw(st.integers(1, 4))
            vm["memory"] = draw(st.sampled_from([256, 512, 1024])) * MiB
            for disk in vm["disks"]:
                disk["size"] = max(disk["size"], draw(st.sampled_from([1, 2, 3])) * GiB)  # disks never shrink
            if draw(st.booleans()):
                vm["disks"].append({"size": GiB})
            if vm["nics"] and draw(st.booleans()):
                vm["nics"].pop()
            vm[LABELS] = draw(LABEL_SETS)  # a record-only change, or none
        # Whatever was removed is no longer referenced.
        vm["disks"] = [d for d in vm["disks"] if d.get("image") is None or d["image"] in new["images"]]
        vm["nics"] = [n for n in vm["nics"] if n["network"] in new["networks"]]
        for nic in vm["nics"]:
            nic["securityGroups"] = [g for g in nic.get("securityGroups", []) if g in new["groups"]]
    for vm in new["vms"].values():
        kept = [t for t in vm.get("dependsOn", []) if t.partition("/")[2] in new[_COLLECTION[t.partition("/")[0]]]]
        vm.pop("dependsOn", None)
        if kept:
            vm["dependsOn"] = kept
    new["vms"].update(draw(vms(new, [f"new{i}" for i in range(draw(st.integers(0, 2)))])))
    return new


_COLLECTION = {"vm": "vms", "network": "networks"}  # where a dependsOn target's kind lives in a model


def render(model: Model) -> str:
    documents: list[dict[str, Any]] = []

    def add(kind: str, name: str, spec: dict[str, Any]) -> None:
        spec = dict(spec)
        metadata = {"name": name, "labels": spec.pop(LABELS, {})}
        documents.append({"apiVersion": "nebctl/v1", "kind": kind, "metadata": metadata, "spec": spec})

    for host in model["hosts"]:
        add("Host", host, {"uri": f"sim://{host}?cpus=64&memory=256Gi&disk=4Ti"})
    add("Datastore", "local", {"type": "dir", "path": "/var/lib/nebctl/local"})
    for name, source in model["images"].items():
        add("Image", name, {"source": source, "format": "qcow2", "datastore": "local"})
    for name, cidr in model["networks"].items():
        add("Network", name, {"mode": "nat", "cidr": cidr})
    for name in model["groups"]:
        add("SecurityGroup", name, {"rules": [{"direction": "in", "protocol": "tcp", "ports": [22]}]})
    for name, vm in model["vms"].items():
        add("VirtualMachine", name, vm)
    # JSON is YAML: one document per line keeps the text exact and cheap to build.
    return "\n---\n".join(json.dumps(doc) for doc in documents)


# --- what every plan must respect -------------------------------------------------------------------------


def check_order(plan: Plan) -> None:
    graph = plan.graph()
    assert nx.is_directed_acyclic_graph(graph), list(nx.simple_cycles(graph))[:3]
    ancestors = {node: nx.ancestors(graph, node) for node in graph}
    by_key: dict[ResourceKey, list[Action]] = {}
    for action in plan.actions:
        by_key.setdefault(action.key, []).append(action)

    def before(first: Action, then: Action) -> bool:
        return first.id in ancestors[then.id]

    for action in plan.actions:
        own = by_key[action.key]
        if "~" in action.key.name:
            # The old VM of a create-first replacement goes only once the whole new VM is built.
            owner = ResourceKey(action.key.kind, action.key.namespace, action.key.name.rpartition("~")[0])
            for other in by_key.get(owner, []):
                assert before(other, action), (other.id, action.id)
        suffix = ":new:" if ":new:" in action.id else ""
        if action.operation == "deploy":
            # After the VM's disks are cloned and its NICs prepared (those of the same incarnation).
            for other in own:
                if other.operation in ("clone", "pre") and (":new:" in other.id) == bool(suffix):
                    assert before(other, action), (other.id, action.id)
        if action.operation == "clone" and action.params.get("backing"):
            for other in plan.actions:
                same_host = other.host == action.host
                if (
                    other.operation == "import_image"
                    and same_host
                    and image_volume(other.key) == action.params["backing"]
                ):
                    assert before(other, action), (other.id, action.id)
        if action.operation == "pre":
            for other in plan.actions:
                network = other.key.kind is Kind.NETWORK and live_name(other.key) == action.params["network"]
                if other.operation == "create" and network and other.host == action.host:
                    assert before(other, action), (other.id, action.id)
        if action.key.kind is Kind.NETWORK and action.operation == "delete":
            # After every VM on that host stopped using it.
            for other in plan.actions:
                uses = other.operation == "clean" and other.params["network"] == live_name(action.key)
                if other.key.kind is Kind.VIRTUAL_MACHINE and other.host == action.host and uses:
                    assert before(other, action), (other.id, action.id)


# Operations that take something down or away; every other one builds, starts or changes a resource.
REMOVING = frozenset({"shutdown", "undeploy", "clean", "delete"})


def declared_pairs(model: Model) -> list[tuple[ResourceKey, ResourceKey]]:
    """(dependent, dependency) for every ``dependsOn`` entry of the model's VMs, read from the model."""
    return [
        (ResourceKey.parse(f"vm/{name}"), ResourceKey.parse(target))
        for name, vm in sorted(model["vms"].items())
        for target in vm.get("dependsOn", [])
    ]


def check_declared_order(plan: Plan, model: Model, previous: Model | None) -> None:
    """Each declared dependency orders the plan, wherever the two resources are: every building action of the
    dependent comes after every building action of its dependency (on the dependent action's host when the
    dependency is a network, which has its own action on each host); and when the dependency is dropped from
    the manifests, every removing action of a dependent that declared it comes before every removing action of
    the dependency. Stated from the manifests alone, not from the planner's references."""
    graph = plan.graph()
    by_key: dict[ResourceKey, list[Action]] = {}
    for action in plan.actions:
        by_key.setdefault(action.key, []).append(action)

    def same_place(dependency: ResourceKey, first: Action, then: Action) -> bool:
        return dependency.kind is not Kind.NETWORK or first.host == then.host

    for dependent, dependency in declared_pairs(model):
        for then in by_key.get(dependent, []):
            if then.operation in REMOVING:
                continue
            for first in by_key.get(dependency, []):
                if first.operation not in REMOVING and same_place(dependency, first, then):
                    assert nx.has_path(graph, first.id, then.id), (first.id, then.id)
    if previous is None:
        return
    dropped = {key for _, key in declared_pairs(previous)} - {ResourceKey.parse(f"vm/{n}") for n in model["vms"]}
    dropped -= {ResourceKey.parse(f"network/{n}") for n in model["networks"]}
    for dependent, dependency in declared_pairs(previous):
        if dependency not in dropped:
            continue
        for first in by_key.get(dependent, []):
            if first.operation not in REMOVING:
                continue
            for then in by_key.get(dependency, []):
                if then.operation in REMOVING and same_place(dependency, then, first):
                    assert nx.has_path(graph, first.id, then.id), (first.id, then.id)


# --- the loop ---------------------------------------------------------------------------------------------


@contextmanager
def fleet() -> Iterator[Controller]:
    with tempfile.TemporaryDirectory(prefix="nebctl-props-") as directory:
        path = Path(directory)
        config = Settings(state_dir=path, shutdown_timeout=0.0, retry={"attempts": 1})
        store = Store.open(f"sqlite:///{path / 'state.db'}")
        try:
            yield Controller(store=store, registry=build_registry(config, entry_points=False), settings=config)
        finally:
            store.close()


def converge(controller: Controller, model: Model, *, prune: bool, previous: Model | None = None) -> Plan:
    documents = load_text(render(model)).documents
    planned = controller.plan(documents, PlanOptions(stack=STACK, prune=prune))
    check_order(planned.plan)
    check_declared_order(planned.plan, model, previous)
    result = controller.apply(planned, parallelism=4)
    failures = [(r.action.id, r.error) for r in result.report.reports.values() if r.error]
    assert result.state == "succeeded", failures
    again = controller.plan(documents, PlanOptions(stack=STACK, prune=prune)).plan
    assert not again.has_changes, [(str(c.key), c.type.value, c.fields, c.drift) for c in again.changes if c.is_change]
    return planned.plan


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_apply_then_plan_again_finds_nothing_to_do(data: st.DataObject) -> None:
    first = data.draw(manifest_sets(), label="manifests")
    second = data.draw(edits(first), label="edited")
    with fleet() as controller:
        converge(controller, first, prune=False)
        try:
            converge(controller, second, prune=True, previous=first)
        except PlanError as error:
            # An edit that replaces what a VM created before its old one is destroyed shares with it (a network
            # whose range moved) is refused, saying why (tests/unit/planning covers it): nothing to converge to.
            assume(not all("createBeforeDestroy cannot be honoured" in problem for problem in error.problems))
            raise


def test_the_rendered_sets_are_valid_manifests() -> None:
    # The strategies above build valid documents by construction; one fixed example keeps that honest.
    model: Model = {
        "hosts": ["h1"],
        "images": {"img0": "/images/img0.qcow2"},
        "networks": {"net0": "10.0.0.0/24"},
        "groups": ["ssh"],
        "vms": {
            "vm0": {
                "state": "running",
                "vcpu": 1,
                "memory": 256 * MiB,
                "disks": [{"image": "img0", "size": 4 * GiB}],
                "nics": [{"network": "net0", "securityGroups": ["ssh"]}],
                "placement": {"host": "h1"},
            }
        },
    }
    assert len(load_text(render(model)).documents) == 6
