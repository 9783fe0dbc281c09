"""The field reference of ``nebctl explain KIND[.FIELD]``, read from the kinds' JSON Schemas.

The descriptions are the ones ``nebctl schema`` writes for editors (they come from the pydantic models, through
``jsonschema.kind_schema``), so the reference on the command line and the hints in an editor never disagree.
Like kubectl's ``explain``: the kind, the field with its type, its description, and the fields under it. Pure:
``explain`` takes a kind and a path and returns text, or raises ``ExplainError`` naming what is wrong.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nebctl.core.keys import Kind, parse_kind
from nebctl.schemas.jsonschema import kind_schema
from nebctl.schemas.models import API_VERSION

Node = Mapping[str, Any]


class ExplainError(ValueError):
    """The kind or the field does not exist; the message says which, with the valid names."""


@dataclass(frozen=True)
class Field:
    """One property of an object, as ``explain`` lists it."""

    name: str
    type: str
    required: bool
    description: str  # the property's own, else its type's
    notes: tuple[str, ...]  # the type's description, allowed values, default, bounds


def _definition(node: Node, defs: Mapping[str, Node]) -> Node:
    """``node`` with a ``$ref`` followed and a nullable ``anyOf [X, null]`` reduced to X."""
    while True:
        if "$ref" in node:
            node = {**defs[str(node["$ref"]).rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
            continue
        branches = [b for b in node.get("anyOf", ()) if b.get("type") != "null"]
        if "anyOf" in node and len(branches) == 1:
            node = {**branches[0], **{k: v for k, v in node.items() if k != "anyOf"}}
            continue
        return node


def _type(node: Node, defs: Mapping[str, Node]) -> str:
    node = _definition(node, defs)
    if node.get("type") == "array":
        return "[]" + _type(node.get("items", {}), defs)
    for combination in ("oneOf", "anyOf"):
        if combination in node:
            kinds = [_type(branch, defs) for branch in node[combination] if branch.get("type") != "null"]
            return "|".join(dict.fromkeys(kinds))
    if "type" in node:
        return str(node["type"])
    if "enum" in node or "const" in node:
        return "string"
    return "any"


def _inner_description(node: Node, defs: Mapping[str, Node]) -> str | None:
    """The description of a field's type (a name's rules, a quantity's units), apart from the field's own."""
    for branch in node.get("anyOf", ()):
        if branch.get("type") != "null" and "description" in branch:
            return str(branch["description"])
    if "items" in node and "description" in node["items"]:
        return f"Each item: {node['items']['description']}"
    return None


def _field(name: str, node: Node, required: bool, defs: Mapping[str, Node]) -> Field:
    resolved = _definition(node, defs)
    description = str(node.get("description") or resolved.get("description") or "(no description)")
    notes: list[str] = []
    inner = _inner_description(node, defs)
    if inner and inner != description:
        notes.append(inner)
    if "const" in resolved:
        notes.append(f"Must be: {resolved['const']}")
    if "enum" in resolved:
        notes.append("One of: " + ", ".join(str(value) for value in resolved["enum"]))
    if "default" in node and node["default"] not in (None, [], {}):
        notes.append(f"Default: {json.dumps(node['default'])}")
    bounds = [f"{word} {resolved[key]}" for key, word in (("minimum", "at least"), ("maximum", "at most"))
              if key in resolved]  # fmt: skip
    if "maxItems" in resolved:
        bounds.append(f"at most {resolved['maxItems']} items")
    if bounds:
        notes.append("Bounds: " + ", ".join(bounds))
    return Field(name, _type(node, defs), required, description, tuple(notes))


def _objects(node: Node, defs: Mapping[str, Node]) -> list[Node]:
    """The object schemas a field holds: itself, its array's items, or the object branches of a choice (an
    image's ``source`` is a path, a URL or a marketplace reference)."""
    node = _definition(node, defs)
    if node.get("type") == "array":
        return _objects(node.get("items", {}), defs)
    found = [node] if "properties" in node else []
    for combination in ("anyOf", "oneOf"):
        for branch in node.get(combination, ()):
            found += _objects(branch, defs)
    return found


def _properties(node: Node, defs: Mapping[str, Node]) -> list[Field]:
    fields = []
    for found in _objects(node, defs):
        required = set(found.get("required", ()))
        fields += [_field(name, prop, name in required, defs) for name, prop in found.get("properties", {}).items()]
    return fields


def children(node: Node, defs: Mapping[str, Node]) -> Mapping[str, Node]:
    """The fields under ``node``, by name (of its object, its array's items, or its choice's objects)."""
    properties: dict[str, Node] = {}
    for found in _objects(node, defs):
        properties.update(found.get("properties", {}))
    return properties


def resolve(kind: Kind, path: Sequence[str]) -> tuple[Node, list[str], Mapping[str, Node]]:
    """The schema node at ``path`` of ``kind``, the path actually followed, and the definitions.

    A path that does not start with a top-level field is looked for under ``spec`` (``vm.memory`` is
    ``vm.spec.memory``); ``disks[0]`` is ``disks``.
    """
    schema = kind_schema(kind)
    defs: Mapping[str, Node] = schema.get("$defs", {})
    names = [segment.split("[", 1)[0] for segment in path]
    if names and names[0] not in schema["properties"] and names[0] in children(schema["properties"]["spec"], defs):
        names = ["spec", *names]
    node: Node = schema
    followed: list[str] = []
    for name in names:
        fields = children(node, defs)
        if name not in fields:
            where = ".".join(followed) or kind.value
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(fields) or "none: it is not an object"
            raise ExplainError(f"{where} has no field {name!r}{hint} (fields: {valid})")
        node = fields[name]
        followed.append(name)
    return node, followed, defs


def parse_target(text: str) -> tuple[Kind, list[str]]:
    """``vm.spec.disks`` -> (VirtualMachine, ["spec", "disks"]); ``ExplainError`` for an unknown kind."""
    head, _, rest = text.strip().partition(".")
    try:
        kind = parse_kind(head)
    except ValueError as error:
        raise ExplainError(str(error)) from None
    return kind, [segment for segment in rest.split(".") if segment] if rest else []


def explain(text: str) -> str:
    """The reference of ``KIND[.FIELD]``, ending with a newline."""
    kind, path = parse_target(text)
    node, followed, defs = resolve(kind, path)
    lines = [f"KIND:     {kind.value}", f"VERSION:  {API_VERSION}"]
    if followed:
        field = _field(followed[-1], node, False, defs)
        lines += [f"FIELD:    {'.'.join(followed)} <{field.type}>", "", "DESCRIPTION:"]
        lines += [f"    {field.description}", *(f"    {note}" for note in field.notes)]
    else:
        lines += ["", "DESCRIPTION:", f"    A {kind.value} document: {API_VERSION} manifests, one per resource."]
    fields = _properties(node, defs)
    if fields:
        lines += ["", "FIELDS:"]
        for child in fields:
            flag = " -required-" if child.required else ""
            lines.append(f"  {child.name}  <{child.type}>{flag}")
            lines += [f"    {child.description}", *(f"    {note}" for note in child.notes), ""]
        lines.pop()
    return "\n".join(lines) + "\n"
