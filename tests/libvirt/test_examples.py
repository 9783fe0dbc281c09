"""The example manifests of manifests/examples-libvirt/ and manifests/examples-guests/ are valid documents of the
manifest models, and each file names the JSON Schema of its kind for editors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from ruamel.yaml import YAML

from nebctl.schemas.models import Manifest

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
EXAMPLES = MANIFESTS / "examples-libvirt"
GUESTS = MANIFESTS / "examples-guests"
FILES = sorted(EXAMPLES.glob("*.yaml")) + sorted(GUESTS.glob("*.yaml"))


def kinds(directory: Path) -> list[str]:
    return [
        doc["kind"] for path in sorted(directory.glob("*.yaml")) for doc in YAML(typ="safe").load_all(path.read_text())
    ]


@pytest.mark.parametrize("directory", [EXAMPLES, GUESTS], ids=["examples-libvirt", "examples-guests"])
def test_the_set_has_every_kind_the_issue_asks_for(directory: Path) -> None:
    found = kinds(directory)
    assert sorted(set(found)) == ["Datastore", "Host", "Image", "Network", "SecurityGroup", "VirtualMachine"]
    assert found.count("VirtualMachine") == 2


def test_the_guests_boot_the_image_kernel_with_static_addresses_and_user_data() -> None:
    documents = [doc for path in sorted(GUESTS.glob("*.yaml")) for doc in YAML(typ="safe").load_all(path.read_text())]
    image = next(d for d in documents if d["kind"] == "Image")["spec"]["source"]
    group = next(d for d in documents if d["kind"] == "SecurityGroup")["spec"]["rules"]
    assert {"direction": "in", "protocol": "icmp"} in group
    assert any(rule.get("ports") == [22] for rule in group) and not any(80 in rule.get("ports", []) for rule in group)
    for vm in (d for d in documents if d["kind"] == "VirtualMachine"):
        spec = vm["spec"]
        assert spec["boot"]["kernel"] == image.replace("disk.qcow2", "vmlinuz")
        assert spec["boot"]["initrd"] == image.replace("disk.qcow2", "initrd.img")
        assert spec["nics"][0]["ip"].startswith("10.124.0.")
        assert spec["cloudInit"]["userData"].startswith("#cloud-config\n")
        assert "http://10.124.0.1:8080/" in spec["cloudInit"]["userData"]


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_example_file_is_valid(path: Path) -> None:
    text = path.read_text()
    documents = list(YAML(typ="safe").load_all(io.StringIO(text)))
    adapter: TypeAdapter[object] = TypeAdapter(Manifest)
    for document in documents:
        adapter.validate_python(document)
    kind = documents[0]["kind"].lower()
    assert text.startswith(f"# yaml-language-server: $schema=../../nebctl/schemas/json/{kind}.schema.json\n")
    assert (path.parent / f"../../nebctl/schemas/json/{kind}.schema.json").resolve().exists()
