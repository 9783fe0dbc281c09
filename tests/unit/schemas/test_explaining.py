"""``nebctl explain`` against the committed JSON Schemas (``nebctl/schemas/json``): for every field of every
kind, the field's own page and its parent's listing carry the description the schema file holds, and say
whether the schema requires it. The schema files are walked here with a few lines of their own, not with the
code under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nebctl.cli import main
from nebctl.core.keys import Kind
from nebctl.schemas.explaining import ExplainError, explain
from nebctl.schemas.jsonschema import schema_file_name

SCHEMAS = Path(__file__).resolve().parents[3] / "nebctl" / "schemas" / "json"


def _object(node: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object schema a property leads to (through $ref, a nullable anyOf, array items), if any."""
    if "$ref" in node:
        return _object(defs[node["$ref"].split("/")[-1]], defs)
    if "anyOf" in node:
        for branch in node["anyOf"]:
            found = _object(branch, defs)
            if found is not None:
                return found
    if "items" in node:
        return _object(node["items"], defs)
    return node if "properties" in node else None


def fields(kind: Kind) -> Iterator[tuple[str, str, bool, bool]]:
    """(path, description, required, has children) of every field of ``kind``'s schema file."""
    schema = json.loads((SCHEMAS / schema_file_name(kind)).read_text())
    defs = schema.get("$defs", {})

    def walk(node: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str, bool, bool]]:
        required = set(node.get("required", ()))
        for name, prop in node["properties"].items():
            path = f"{prefix}{name}"
            child = _object(prop, defs)
            yield path, prop.get("description", ""), name in required, child is not None
            if child is not None:
                yield from walk(child, f"{path}.")

    yield from walk(schema, "")


ALL = [(kind, *field) for kind in Kind for field in fields(kind)]


def test_every_field_of_every_kind_has_a_description() -> None:
    assert len(ALL) > 100
    assert [f"{kind.value}.{path}" for kind, path, description, *_ in ALL if not description] == []


@pytest.mark.parametrize(
    ("kind", "path", "description", "required", "_children"), ALL, ids=[f"{k.short}.{p}" for k, p, *_ in ALL]
)
def test_explain_gives_each_fields_description(
    kind: Kind, path: str, description: str, required: bool, _children: bool
) -> None:
    page = explain(f"{kind.short}.{path}").splitlines()
    assert page[0] == f"KIND:     {kind.value}"
    assert page[2].startswith(f"FIELD:    {path} <")
    at = page.index("DESCRIPTION:")
    assert page[at + 1] == f"    {description}"
    # The parent lists it, with the same description and the schema's required flag.
    parent, _, name = path.rpartition(".")
    listing = explain(f"{kind.short}.{parent}" if parent else kind.short).splitlines()
    [line] = [i for i, text in enumerate(listing) if text.startswith(f"  {name}  <")]
    assert listing[line].endswith(" -required-") == required
    assert listing[line + 1] == f"    {description}"


@pytest.mark.parametrize(
    ("target", "field_line", "notes"),
    [
        ("vm.spec.disks", "FIELD:    spec.disks <[]object>", ["    Bounds: at most 64 items"]),
        ("vm.spec.memory", "FIELD:    spec.memory <integer|string>", []),
        ("vm.memory", "FIELD:    spec.memory <integer|string>", []),  # spec. may be left out
        ("vm.spec.disks[0].size", "FIELD:    spec.disks.size <integer|string>", []),
        (
            "VirtualMachine.spec.vcpu",
            "FIELD:    spec.vcpu <integer>",
            ["    Default: 1", "    Bounds: at least 1, at most 512"],
        ),
        (
            "vm.spec.state",
            "FIELD:    spec.state <string>",
            ["    One of: running, stopped, suspended", '    Default: "running"'],
        ),
        ("sg.spec.rules.protocol", "FIELD:    spec.rules.protocol <string>", ["    One of: tcp, udp, icmp, any"]),
        ("network.spec.dns", "FIELD:    spec.dns <[]string>", []),
    ],
)
def test_types_values_and_defaults(target: str, field_line: str, notes: list[str]) -> None:
    page = explain(target).splitlines()
    assert page[2] == field_line
    start = page.index("DESCRIPTION:") + 2
    section = page[start : page.index("", start)] if "" in page[start:] else page[start:]
    for note in notes:
        assert note in section


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("vm.spec.memroy", "spec has no field 'memroy'; did you mean 'memory'? (fields: state, vcpu, memory, disks, "
         "nics, placement, cloudInit, boot, lifecycle, dependsOn)"),
        ("vm.spec.vcpu.cores", "spec.vcpu has no field 'cores' (fields: none: it is not an object)"),
        ("vn", "unknown kind 'vn'; expected one of datastore, hook, host, image, marketplace, network, "
         "securitygroup, vm"),
    ],
)  # fmt: skip
def test_errors_say_what_and_where(target: str, message: str) -> None:
    with pytest.raises(ExplainError) as raised:
        explain(target)
    assert str(raised.value) == message


def test_the_command() -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["explain", "image.spec"])
    assert ok.exit_code == 0 and "FIELD:    spec <object>" in ok.output and "  source  <" in ok.output
    bad = runner.invoke(main, ["explain", "image.spec.sauce"])
    assert bad.exit_code == 1 and "error: spec has no field 'sauce'; did you mean 'source'?" in bad.output
