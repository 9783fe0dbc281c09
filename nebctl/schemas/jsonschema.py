"""JSON Schemas of the manifest kinds, generated from the pydantic models, for editors and other tools.

``nebctl schema`` prints or writes them; the copies committed under ``nebctl/schemas/json/`` are what the
``# yaml-language-server: $schema=...`` comment of every manifest in the repository points to, and a test
fails when they no longer match the models. The field descriptions come from the models, so there is one place
to document a field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from nebctl.core.keys import Kind
from nebctl.schemas.models import API_VERSION, MODEL_BY_KIND, Manifest

DIALECT = "https://json-schema.org/draft/2020-12/schema"
COMBINED_FILE = "manifest.schema.json"


def schema_file_name(kind: Kind) -> str:
    """The file that holds one kind's schema: ``virtualmachine.schema.json``..."""
    return f"{kind.value.lower()}.schema.json"


def kind_schema(kind: Kind) -> dict[str, Any]:
    """The JSON Schema of one kind's documents."""
    schema = MODEL_BY_KIND[kind].model_json_schema(mode="validation")
    return {
        "$schema": DIALECT,
        "$id": schema_file_name(kind),
        **schema,
        "title": f"nebctl {kind.value} ({API_VERSION})",
    }


def combined_schema() -> dict[str, Any]:
    """One schema for a document of any kind, chosen by ``kind``: the one a multi-kind file should name."""
    schema = TypeAdapter(Manifest).json_schema(mode="validation")
    return {
        "$schema": DIALECT,
        "$id": COMBINED_FILE,
        "title": f"nebctl manifest ({API_VERSION})",
        "description": "Any nebctl manifest document; the 'kind' field selects its schema.",
        **schema,
    }


def render(schema: dict[str, Any]) -> str:
    """Stable text of a schema: the committed files are compared with it byte for byte."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def schema_files() -> dict[str, str]:
    """Every schema file by name: the combined one first, then one per kind."""
    files = {COMBINED_FILE: render(combined_schema())}
    for kind in Kind:
        files[schema_file_name(kind)] = render(kind_schema(kind))
    return files


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema file into ``directory`` (created if needed); returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
