"""render_json: the documented shape (checked against docs/plan-json.schema.json), plain JSON, nulled secrets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nebctl.rendering import FORMAT_VERSION, render_json
from tests.unit.rendering.plans import GiB, spec_example
from tests.unit.rendering.scenarios import SCENARIOS
from tests.unit.rendering.test_golden import plan_of

DOCS = Path(__file__).resolve().parents[3] / "docs"
SCHEMA: dict[str, Any] = json.loads((DOCS / "plan-json.schema.json").read_text(encoding="utf-8"))

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def violations(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """The subset of JSON Schema that the plan schema uses (type, const, enum, required, properties,
    additionalProperties, items, local $ref): enough to check the shape without a dependency."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return violations(value, SCHEMA["$defs"][name], where)
    found = []
    types = schema.get("type")
    if types is not None and not any(_is(value, t) for t in ([types] if isinstance(types, str) else types)):
        return [f"{where}: {value!r} is not of type {types}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [f"{where}: missing {name}" for name in schema.get("required", []) if name not in value]
        if schema.get("additionalProperties") is False:
            found += [f"{where}: unexpected {name}" for name in value if name not in properties]
        for name, item in value.items():
            if name in properties:
                found += violations(item, properties[name], f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += violations(item, schema["items"], f"{where}[{index}]")
    return found


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_scenario_matches_the_documented_schema(scenario: str) -> None:
    assert violations(render_json(plan_of(scenario)), SCHEMA) == []


def test_the_checker_does_catch_a_wrong_document() -> None:
    document = render_json(spec_example())
    document["summary"]["add"] = "2"
    del document["actions"][0]["depends_on"]
    document["resource_changes"][0]["colour"] = "green"
    assert violations(document, SCHEMA) == [
        "$.summary.add: '2' is not of type integer",
        "$.resource_changes[0]: unexpected colour",
        "$.actions[0]: missing depends_on",
    ]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_document_is_plain_json(scenario: str) -> None:
    document = render_json(plan_of(scenario))
    assert json.loads(json.dumps(document, allow_nan=False)) == document


def test_content_of_the_spec_example() -> None:
    document = render_json(spec_example())
    assert document["format_version"] == FORMAT_VERSION == "1"
    assert document["summary"] == {"add": 2, "change": 1, "destroy": 1}
    assert document["has_changes"] is True
    web1 = document["resource_changes"][1]
    assert web1 == {
        "address": "vm/web-1",
        "kind": "VirtualMachine",
        "namespace": "default",
        "name": "web-1",
        "type": "update",
        "restart": True,
        "create_first": False,
        "host": None,
        "previous_host": None,
        "reason": None,
        "fields": [
            {"path": "memory", "before": GiB, "after": 2 * GiB, "effect": "restart", "sensitive": False, "why": None}
        ],
        "unchanged": 6,
        "drift": [],
    }
    assert document["resource_changes"][3]["drift"] == [
        {"address": "vm/web-2", "message": "was stopped", "correction": "it will be started"}
    ]
    start = document["actions"][2]
    assert start["depends_on"] == ["network/lan:create:kvm-a1", "vm/web-1:shutdown"]
    assert start["params"] == {"memory": 2 * GiB}
    assert start["family"] == "virtualization"


def test_sensitive_values_are_null_and_flagged() -> None:
    document = render_json(plan_of("secret-change"))
    (web2,) = [change for change in document["resource_changes"] if change["address"] == "vm/web-2"]
    (secret,) = web2["fields"]
    assert secret == {
        "path": "cloudInit.userData",
        "before": None,
        "after": None,
        "effect": "replace",
        "sensitive": True,
        "why": "cloud-init data is read at first boot only",
    }


def test_the_documentation_describes_every_property_of_the_schema() -> None:
    text = (DOCS / "plan-json.md").read_text(encoding="utf-8")
    names = set(SCHEMA["properties"])
    for definition in SCHEMA["$defs"].values():
        names |= set(definition.get("properties", {}))
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert missing == []
