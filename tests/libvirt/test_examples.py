"""The example manifests of manifests/examples-libvirt/ are valid documents of the manifest models, and each
file names the JSON Schema of its kind for editors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from ruamel.yaml import YAML

from nebctl.schemas.models import Manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples-libvirt"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_the_set_has_every_kind_the_issue_asks_for() -> None:
    kinds = [doc["kind"] for path in FILES for doc in YAML(typ="safe").load_all(path.read_text())]
    assert sorted(set(kinds)) == ["Datastore", "Host", "Image", "Network", "SecurityGroup", "VirtualMachine"]
    assert kinds.count("VirtualMachine") == 2


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_example_file_is_valid(path: Path) -> None:
    text = path.read_text()
    documents = list(YAML(typ="safe").load_all(io.StringIO(text)))
    adapter: TypeAdapter[object] = TypeAdapter(Manifest)
    for document in documents:
        adapter.validate_python(document)
    kind = documents[0]["kind"].lower()
    assert text.startswith(f"# yaml-language-server: $schema=../../nebctl/schemas/json/{kind}.schema.json\n")
    assert (EXAMPLES / f"../../nebctl/schemas/json/{kind}.schema.json").resolve().exists()
