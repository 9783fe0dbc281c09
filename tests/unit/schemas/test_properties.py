"""Property tests: generated valid manifest sets load, and dumping then loading gives equal models."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nebctl.schemas.dumping import dump_text
from nebctl.schemas.loading import load_text
from tests.unit.schemas.documents import as_yaml, document

TEXT = st.text(st.characters(whitelist_categories=("L", "N", "P", "S", "Zs")), max_size=12)
NAMES = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z", fullmatch=True)
UNITS = st.sampled_from(["", "Ki", "Mi", "Gi", "K", "M", "G"])
LABELS = st.dictionaries(st.from_regex(r"\A[a-z]([-a-z0-9_.]{0,6}[a-z0-9])?\Z", fullmatch=True), TEXT, max_size=3)


def quantity(minimum: int) -> st.SearchStrategy[Any]:
    spelled = st.tuples(st.integers(1, 4096), UNITS).map(lambda t: f"{t[0]}{t[1]}")
    return st.one_of(st.integers(minimum, 2**40), spelled).filter(
        lambda q: not isinstance(q, str) or _bytes(q) >= minimum
    )


def _bytes(text: str) -> int:
    from nebctl.core.quantities import parse_quantity

    return parse_quantity(text)


@st.composite
def manifest_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    hosts = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    docs = [
        document("Host", name, uri=f"sim://{name}", labels=draw(LABELS), enabled=draw(st.booleans())) for name in hosts
    ]
    docs.append(document("Datastore", "ds", hosts=draw(st.lists(st.sampled_from(hosts), unique=True))))
    images = draw(st.lists(NAMES, min_size=1, max_size=2, unique=True))
    docs += [document("Image", name, datastore="ds", format=draw(st.sampled_from(["qcow2", "raw"]))) for name in images]
    octet = draw(st.integers(0, 255))
    cidr = ipaddress.IPv4Network(f"10.{octet}.0.0/24")
    docs.append(document("Network", "net", mode=draw(st.sampled_from(["nat", "isolated"])), cidr=str(cidr)))
    docs.append(document("SecurityGroup", "sg", rules=[{"direction": "in", "protocol": "tcp", "ports": [22]}]))
    vm_names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    addresses = iter(draw(st.lists(st.integers(2, 254), min_size=len(vm_names), max_size=len(vm_names), unique=True)))
    for index, name in enumerate(vm_names):
        nic: dict[str, Any] = {"network": "net", "securityGroups": ["sg"]}
        if draw(st.booleans()):
            nic["ip"] = str(cidr.network_address + next(addresses))
        spec: dict[str, Any] = {
            "state": draw(st.sampled_from(["running", "stopped", "suspended"])),
            "vcpu": draw(st.integers(1, 64)),
            "memory": draw(quantity(16 * 1024**2)),
            "disks": [{"image": draw(st.sampled_from(images)), "size": draw(quantity(1024**2))}],
            "nics": [nic],
            "dependsOn": [f"vm/{vm_names[index - 1]}"] if index else [],
        }
        if draw(st.booleans()):
            spec["placement"] = {"host": draw(st.sampled_from(hosts))}
        else:
            spec["placement"] = {"requirements": "free_memory >= 1Gi", "policy": "packing"}
        if draw(st.booleans()):
            spec["cloudInit"] = {"userData": draw(TEXT)}
        docs.append(document("VirtualMachine", name, **spec))
    docs.append(document("Hook", "h", on=["vm.failed"], command=["/bin/echo", draw(TEXT.filter(bool))]))
    return docs


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(manifest_sets())
def test_generated_valid_sets_load(docs: list[dict[str, Any]]) -> None:
    loaded = load_text(as_yaml(*docs), "gen.yaml")
    assert len(loaded) == len(docs)


@SETTINGS
@given(manifest_sets())
def test_dump_then_load_gives_equal_models(docs: list[dict[str, Any]]) -> None:
    loaded = load_text(as_yaml(*docs), "gen.yaml")
    reloaded = load_text(dump_text(loaded.documents.values(), reveal_secrets=True), "dump.yaml")
    assert reloaded.documents == loaded.documents
    assert list(reloaded.documents) == list(loaded.documents)
