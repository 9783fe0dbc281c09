"""Cross-document checks: references and their scoping, duplicates, cycles, static addresses, ignoreChanges."""

from __future__ import annotations

import random
from typing import Any

import pytest

from nebctl.core.keys import Kind, ResourceKey
from nebctl.schemas.diagnostics import DataPath
from nebctl.schemas.loading import ManifestError, load_text
from nebctl.schemas.validation import _has_cycle, ignore_path_problem, references_of
from tests.unit.schemas.documents import as_yaml, document, fleet


def problems(*docs: dict[str, Any]) -> list[str]:
    try:
        load_text(as_yaml(*docs), "t.yaml")
    except ManifestError as error:
        return [f"{d.subject}: {d.message}" for d in error.diagnostics]
    return []


def vm(name: str = "web-1", **spec: Any) -> dict[str, Any]:
    return document("VirtualMachine", name, **spec)


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        ([vm(disks=[{"image": "debian-12"}])], []),
        ([vm(disks=[{"image": "debian-13"}])], ["Image 'debian-13' not found in namespace 'default', did you mean"]),
        ([vm(disks=[{"size": "1Gi", "datastore": "remote"}])], ["Datastore 'remote' not found"]),
        ([vm(nics=[{"network": "wan"}])], ["Network 'wan' not found in namespace 'default'"]),
        ([vm(nics=[{"network": "lan", "securityGroups": ["ssh", "web"]}])], ["SecurityGroup 'web' not found"]),
        ([vm(placement={"host": "kvm-2"})], ["Host 'kvm-2' not found, did you mean 'kvm-1'?"]),
        ([vm(dependsOn=["hook/notify"])], ["dependsOn: Hook 'notify' not found in namespace 'default'"]),
        ([vm(dependsOn=["host/kvm-1", "ds/local", "sg/ssh"])], []),
        ([document("Image", "img2", datastore="remote")], ["Datastore 'remote' not found"]),
        ([document("Image", "img2", source={"marketplace": "hub/x"})], ["Marketplace 'hub' not found"]),
        ([document("Datastore", "ds2", hosts=["kvm-1", "kvm-3"])], ["Host 'kvm-3' not found"]),
        ([document("Network", "net2", cidr="10.30.0.0/24", hosts=["kvm-9"])], ["Host 'kvm-9' not found"]),
    ],
)
def test_references(docs: list[dict[str, Any]], expected: list[str]) -> None:
    found = problems(*fleet(), *docs)
    assert len(found) == len(expected), found
    for message, fragment in zip(found, expected, strict=True):
        assert fragment in message


def test_namespaced_kinds_resolve_in_their_namespace_and_cluster_kinds_from_anywhere() -> None:
    team = [
        document("Image", "debian-12", namespace="team-a"),
        document("Network", "lan", namespace="team-a"),
        vm(
            namespace="team-a",
            disks=[{"image": "debian-12", "datastore": "local"}],
            nics=[{"network": "lan"}],
            placement={"host": "kvm-1"},
        ),
    ]
    assert problems(*fleet(), *team) == []
    # The same VM without its namespace's network and image: those of 'default' do not count.
    stranger = vm("web-2", namespace="team-b", disks=[{"image": "debian-12"}], nics=[{"network": "lan"}])
    assert problems(*fleet(), stranger) == [
        "team-b/VirtualMachine/web-2: Image 'debian-12' not found in namespace 'team-b'",
        "team-b/VirtualMachine/web-2: Network 'lan' not found in namespace 'team-b'",
    ]


def test_depends_on_may_name_another_namespace_explicitly() -> None:
    other = document("Network", "lan", namespace="shared", cidr="10.50.0.0/24")
    assert problems(*fleet(), other, vm(namespace="team-a", dependsOn=["shared/network/lan"])) == []


def test_duplicates_name_both_places_and_differ_by_kind_and_namespace() -> None:
    found = problems(*fleet(), vm(), vm(), vm(namespace="team-a"), document("Hook", "web-1"))
    assert found == [
        "VirtualMachine/web-1: duplicate VirtualMachine 'web-1' in namespace 'default': also defined at t.yaml:11:76"
    ]
    # A cluster-scoped kind has no namespace to mention.
    assert problems(document("Host", "kvm-1"), document("Host", "kvm-1")) == [
        "Host/kvm-1: duplicate Host 'kvm-1': also defined at t.yaml:1:66"
    ]


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": ["b"], "b": []}, []),
        ({"a": ["a"]}, ["vm/a -> vm/a"]),
        ({"a": ["b"], "b": ["a"]}, ["vm/a -> vm/b -> vm/a"]),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["vm/a -> vm/b -> vm/c -> vm/a"]),
        ({"c": ["a"], "a": ["b"], "b": ["c"]}, ["vm/c -> vm/a -> vm/b -> vm/c"]),
        ({"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"]}, ["vm/a -> vm/b -> vm/a", "vm/c -> vm/d -> vm/c"]),
        ({"a": ["b", "c"], "b": ["c"], "c": []}, []),
    ],
)
def test_dependency_cycles_are_printed(edges: dict[str, list[str]], expected: list[str]) -> None:
    docs = [vm(name, dependsOn=[f"vm/{target}" for target in targets]) for name, targets in edges.items()]
    found = problems(*docs)
    assert [message.split("dependency cycle: ")[1] for message in found] == expected


@pytest.mark.parametrize("seed", range(200))
def test_the_cycle_check_agrees_with_networkx(seed: int) -> None:
    """Validation looks for a cycle in pure Python and imports networkx only to report one: both must agree."""
    import networkx as nx

    chooser = random.Random(seed)
    size = chooser.randint(1, 8)
    keys = [ResourceKey.of(Kind.VIRTUAL_MACHINE, f"vm-{index}", "default") for index in range(size)]
    path: DataPath = ("spec",)
    edges = {key: dict.fromkeys(chooser.sample(keys, chooser.randint(0, min(2, size))), path) for key in keys}
    graph: nx.DiGraph[ResourceKey] = nx.DiGraph()
    graph.add_nodes_from(keys)
    graph.add_edges_from((source, target) for source, targets in edges.items() for target in targets)
    assert _has_cycle(edges) == (not nx.is_directed_acyclic_graph(graph))


@pytest.mark.parametrize(
    ("network", "addresses", "expected"),
    [
        ({"cidr": "10.0.0.0/24"}, ["10.0.0.2", "10.0.0.254"], []),
        ({"cidr": "10.0.0.0/24"}, ["10.0.0.1"], ["address 10.0.0.1 is the gateway of network 'n'"]),
        ({"cidr": "10.0.0.0/24"}, ["10.0.0.0"], ["is outside the range of network 'n' (10.0.0.2 - 10.0.0.254)"]),
        ({"cidr": "10.0.0.0/24"}, ["10.0.0.255"], ["is outside the range"]),
        ({"cidr": "10.0.0.0/24", "gateway": "10.0.0.254"}, ["10.0.0.1"], []),
        ({"cidr": "10.0.0.0/24", "gateway": "10.0.0.254"}, ["10.0.0.254"], ["is the gateway"]),
        ({"cidr": "10.0.0.0/24"}, ["10.0.1.5"], ["address 10.0.1.5 is outside network 'n' (10.0.0.0/24)"]),
        (
            {"cidr": "10.0.0.0/24", "range": {"first": "10.0.0.50", "last": "10.0.0.60"}},
            ["10.0.0.49"],
            ["outside the range of network 'n' (10.0.0.50 - 10.0.0.60)"],
        ),
        ({"cidr": "10.0.0.0/24"}, ["10.0.0.7", "10.0.0.7"], ["address 10.0.0.7 on network 'n' is already taken"]),
    ],
)
def test_static_addresses(network: dict[str, Any], addresses: list[str], expected: list[str]) -> None:
    net = document("Network", "n", **network)
    vms = [vm(f"vm-{i}", nics=[{"network": "n", "ip": ip}]) for i, ip in enumerate(addresses)]
    found = problems(net, *vms)
    assert len(found) == len(expected), found
    for message, fragment in zip(found, expected, strict=True):
        assert fragment in message


def test_same_address_on_two_networks_or_namespaces_is_fine() -> None:
    nets = [
        document("Network", "a", cidr="10.0.0.0/24"),
        document("Network", "b", cidr="10.0.0.0/24"),
        document("Network", "a", namespace="t", cidr="10.0.0.0/24"),
    ]
    vms = [
        vm("x", nics=[{"network": "a", "ip": "10.0.0.9"}, {"network": "b", "ip": "10.0.0.9"}]),
        vm("y", namespace="t", nics=[{"network": "a", "ip": "10.0.0.9"}]),
    ]
    assert problems(*nets, *vms) == []


SPEC = {"memory": 1, "disks": [{"image": "a"}, {"size": 5}], "nics": [{"network": "n"}], "placement": {}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("memory", None),
        ("vcpu", None),
        ("disks", None),
        ("disks[1].size", None),
        ("disks[*].size", None),
        ("nics[0].ip", None),
        ("placement.requirements", None),
        ("cloudInit.userData", None),
        ("lifecycle.preventDestroy", None),
        ("metadata", None),
        ("metadata.labels", None),
        ("metadata.labels.app.kubernetes.io/name", None),
        ("metadata.annotations", None),
        ("metadata.lables", "no field 'lables' in metadata (labels and annotations can be ignored), did you mean"),
        ("metadata.name", "no field 'name' in metadata"),
        ("memroy", "no field 'memroy' in the VM spec, did you mean 'memory'?"),
        ("disks[2].size", "disks has 2 items"),
        ("disks[0].sise", "no field 'sise' in disks[0], did you mean 'size'?"),
        ("memory[0]", "memory is not a list"),
        ("memory.x", "memory has no fields"),
        ("disks.0", "invalid path 'disks.0'"),
        ("", "invalid path ''"),
    ],
)
def test_ignore_changes_paths(path: str, expected: str | None) -> None:
    problem = ignore_path_problem(path, SPEC)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_ignore_changes_problems_are_located_at_the_entry() -> None:
    with pytest.raises(ManifestError) as caught:
        load_text(
            "apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {name: a}\nspec:\n  memory: 1Gi\n"
            "  lifecycle:\n    ignoreChanges:\n      - memory\n      - vpcu\n",
            "t.yaml",
        )
    assert [str(d) for d in caught.value.diagnostics] == [
        "t.yaml:9:9: VirtualMachine/a: lifecycle.ignoreChanges: 'vpcu': no field 'vpcu' in the VM spec, "
        "did you mean 'vcpu'?"
    ]


def test_references_of_lists_every_implicit_and_explicit_reference() -> None:
    loaded = load_text(
        as_yaml(
            *fleet(),
            vm(
                disks=[{"image": "debian-12", "datastore": "local"}],
                nics=[{"network": "lan", "securityGroups": ["ssh"]}],
                placement={"host": "kvm-1"},
                dependsOn=["image/debian-12"],
            ),
        )
    )
    key = ResourceKey.of(Kind.VIRTUAL_MACHINE, "web-1")
    refs = references_of(key, loaded.documents[key])
    assert [(r.path, str(r.target), r.explicit) for r in refs] == [
        (("spec", "disks", 0, "image"), "image/debian-12", False),
        (("spec", "disks", 0, "datastore"), "datastore/local", False),
        (("spec", "nics", 0, "network"), "network/lan", False),
        (("spec", "nics", 0, "securityGroups", 0), "securitygroup/ssh", False),
        (("spec", "placement", "host"), "host/kvm-1", False),
        (("spec", "dependsOn", 0), "image/debian-12", True),
    ]
