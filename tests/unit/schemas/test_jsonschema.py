"""The committed JSON Schemas match the models, and every manifest in the repository names one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nebctl.core.keys import Kind
from nebctl.schemas.jsonschema import COMBINED_FILE, combined_schema, kind_schema, schema_files, write_schemas
from tests.conftest import REPO_ROOT

COMMITTED = REPO_ROOT / "nebctl" / "schemas" / "json"
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(?P<path>\S+)$")


def test_committed_schemas_are_up_to_date() -> None:
    expected = schema_files()
    committed = {path.name: path.read_text(encoding="utf-8") for path in COMMITTED.glob("*.json")}
    stale = sorted(name for name in expected if committed.get(name) != expected[name])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, f"stale {stale}, extra {extra}: run `make schemas` and commit the result"


def test_every_kind_has_a_schema_that_forbids_unknown_fields() -> None:
    for kind in Kind:
        schema = kind_schema(kind)
        assert schema["properties"]["kind"]["const"] == kind.value
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) == {"apiVersion", "kind", "metadata", "spec"}
    combined = combined_schema()
    assert len(combined["oneOf"]) == len(Kind)
    assert combined["discriminator"]["propertyName"] == "kind"


def test_field_descriptions_reach_the_schema() -> None:
    spec = kind_schema(Kind.VIRTUAL_MACHINE)["$defs"]["VirtualMachineSpec"]["properties"]
    assert "2Gi" in spec["memory"]["description"]
    assert [alternative["type"] for alternative in spec["memory"]["oneOf"]] == ["integer", "string"]


def test_write_schemas_writes_every_file(tmp_path: Path) -> None:
    written = write_schemas(tmp_path / "out")
    assert sorted(path.name for path in written) == sorted(schema_files())
    assert json.loads((tmp_path / "out" / COMBINED_FILE).read_text())["$id"] == COMBINED_FILE


def manifest_files() -> list[Path]:
    return sorted(
        path
        for top in ("manifests", "tests/manifests")
        for path in (REPO_ROOT / top).rglob("*.y*ml")
        if path.suffix in (".yaml", ".yml") and path.stat().st_size > 0
    )


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_manifest_names_the_committed_schema(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    match = MODELINE.match(first_line)
    assert match is not None, f"{path} must start with '# yaml-language-server: $schema=RELATIVE-PATH'"
    target = (path.parent / match["path"]).resolve()
    # A file of one kind may name that kind's schema; files that mix kinds name the combined one.
    assert target.parent == COMMITTED.resolve() and target.is_file(), (
        f"{path}: {match['path']} is not a committed schema"
    )
