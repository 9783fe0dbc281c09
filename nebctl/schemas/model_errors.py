"""pydantic's validation errors of one document, turned into diagnostics users can act on.

pydantic reports where it failed as a ``loc`` through its own schema (union branch tags included) and says it
in its own words; ``translate_errors`` walks each ``loc`` through the document's data to find the field and its
position, keeps only the errors of the union branch the user meant, and words each message for the manifest's
author (with 'did you mean' hints). ``schemas.checking`` calls it when a document fails its kind's model.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import BaseModel

from nebctl.core.keys import NAME_PATTERN
from nebctl.schemas.diagnostics import (
    DataPath,
    Diagnostic,
    SourceLocation,
    closest_match,
    format_path,
    nearest_location,
    non_ascii_note,
    show_value,
)
from nebctl.schemas.model_fields import model_fields_at
from nebctl.schemas.models import HOOK_EVENT_PATTERN, CrossFieldError
from nebctl.schemas.reading.raw_documents import RawDocument


def translate_errors(
    validation_error: pydantic.ValidationError,
    model: type[BaseModel],
    data: dict[str, Any],
    subject: str | None,
    raw: RawDocument,
) -> list[Diagnostic]:
    """One diagnostic per distinct problem that ``model`` found in ``data`` (the document ``raw`` holds)."""
    errors = [_resolve(e, data) for e in validation_error.errors(include_url=False)]
    diagnostics: list[Diagnostic] = []
    seen: set[tuple[SourceLocation, str]] = set()
    for error in _prune_union_branches(errors):
        location = _error_location(error, raw)
        message = _message(error, model, data)
        if (location, message) not in seen:
            seen.add((location, message))
            diagnostics.append(Diagnostic(location, subject, message))
    return diagnostics


def cross_field_diagnostics(
    validation_error: pydantic.ValidationError,
    model: type[BaseModel],
    data: dict[str, Any],
    subject: str | None,
    raw: RawDocument,
) -> list[Diagnostic]:
    """The problems across fields (``CrossFieldError``) that pydantic did not look for because another field of
    the same model was wrong: a model's own checks run only once all its fields are valid. The fields in error
    are taken out (an unknown field, a value of the wrong type) and the document checked again; what that finds
    across fields is reported too, at the field it is about, so one run shows every problem."""
    repaired = copy.deepcopy(data)
    removed = False
    for error in validation_error.errors(include_url=False):
        if error["type"] == "missing":
            continue
        path = _resolve(error, data).path
        parent: Any = repaired
        for part in path[:-1]:
            parent = parent[part] if _has_child(parent, part) else None  # taken out for an earlier error
        if path and isinstance(parent, dict) and path[-1] in parent:
            del parent[path[-1]]
            removed = True
    if not removed:
        return []
    try:
        model.model_validate(repaired)
    except pydantic.ValidationError as again:
        found = [
            e for e in again.errors(include_url=False) if isinstance((e.get("ctx") or {}).get("error"), CrossFieldError)
        ]
        if found:
            rebuilt = pydantic.ValidationError.from_exception_data(again.title, found)  # type: ignore[arg-type]
            return translate_errors(rebuilt, model, repaired, subject, raw)
    return []


@dataclass
class _Error:
    type: str
    path: DataPath  # where in the data the error is
    union_site: DataPath | None  # the path of the union whose branch reported it, if any
    branch: str | None
    field_name: str | None  # the missing field, for 'missing'
    on_key: bool  # the error is about a mapping key (a label's name, say)
    raw: Any  # pydantic's error dict


def _resolve(error: Any, data: Any) -> _Error:
    """Walk pydantic's ``loc`` through the data; parts that are not in the data are union branch tags."""
    loc: tuple[Any, ...] = tuple(error["loc"])
    path: list[str | int] = []
    node = data
    union_site: DataPath | None = None
    branch: str | None = None
    field_name: str | None = None
    on_key = False
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if _has_child(node, part):
            path.append(part)
            node = node[part]
        elif part == "[key]":
            on_key = True
        elif last and error["type"] == "missing":
            field_name = str(part)
        elif union_site is None:
            union_site, branch = tuple(path), str(part)
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, CrossFieldError) and _has_child(node, cause.field):
        path.append(cause.field)  # a problem across fields, about this one: at its line
    return _Error(error["type"], tuple(path), union_site, branch, field_name, on_key, error)


def _has_child(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    if isinstance(node, list):
        return isinstance(part, int) and 0 <= part < len(node)
    return False


def _prune_union_branches(errors: list[_Error]) -> list[_Error]:
    """Keep the errors of the union branch the user meant (``source: {marketplace: ...}`` is not a string).

    A branch that only failed on its type is dropped when another branch got further. When every branch
    failed on its type, one error remains, saying which types would do.
    """
    by_site: dict[DataPath, list[_Error]] = {}
    for error in errors:
        if error.union_site is not None:
            by_site.setdefault(error.union_site, []).append(error)
    dropped: set[int] = set()
    for site_errors in by_site.values():
        deep = [e for e in site_errors if not _is_type_error(e)]
        if deep:
            dropped.update(id(e) for e in site_errors if _is_type_error(e))
        else:
            expected = " or ".join(dict.fromkeys(_type_name(e) for e in site_errors))
            first = site_errors[0]
            first.type = "union_type"
            first.raw = {**first.raw, "ctx": {"expected": expected}}
            dropped.update(id(e) for e in site_errors[1:])
    return [error for error in errors if id(error) not in dropped]


def _is_type_error(error: _Error) -> bool:
    return error.type.endswith("_type") or error.type in ("literal_error", "enum")


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _type_name(error: _Error) -> str:
    return _TYPE_NAMES.get(error.type, "another value")


def _error_location(error: _Error, raw: RawDocument) -> SourceLocation:
    if error.type == "extra_forbidden" or error.on_key:
        found = raw.key_positions.get(error.path)
        if found is not None:
            return found
    cause = (error.raw.get("ctx") or {}).get("error")
    offset = getattr(cause, "position", None)
    if isinstance(offset, int) and error.path in raw.text_offsets and error.path in raw.positions:
        start = raw.positions[error.path]
        return SourceLocation(start.file, start.line, start.column + raw.text_offsets[error.path] + offset)
    return nearest_location(raw.positions, error.path, raw.location)


def _message(error: _Error, model: type[BaseModel], data: Any) -> str:
    raw = error.raw
    kind = error.type
    ctx: dict[str, Any] = raw.get("ctx") or {}
    value = raw.get("input")
    where = format_path(error.path[:-1] if error.on_key else error.path)
    field_label = where or "the document"

    if kind == "extra_forbidden":
        name = str(error.path[-1]) if error.path else "?"
        fields = model_fields_at(model, error.path[:-1])
        suggestion = closest_match(name, fields) if fields else None
        if suggestion:
            return f"unknown field '{name}', did you mean '{suggestion}'?"
        listed = f"; expected one of: {', '.join(fields)}" if fields else ""
        return f"unknown field '{name}'{listed}"
    if kind == "missing":
        parent = f" in {format_path(error.path)}" if error.path else ""
        return f"missing required field '{error.field_name}'{parent}"
    if kind in ("value_error", "assertion_error"):
        detail = str(ctx.get("error", raw["msg"]))
        return f"{where}: {detail}" if where else detail
    if kind in ("enum", "literal_error"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        suggestion = closest_match(str(value), choices) if isinstance(value, str) else None
        hint = f", did you mean '{suggestion}'?" if suggestion else ""
        return f"{field_label}: invalid value {show_value(value)}: expected {ctx.get('expected')}{hint}"
    if kind == "string_pattern_mismatch":
        return _pattern_message(error, field_label, value, str(ctx.get("pattern", "")))
    if kind == "union_type":
        return f"{field_label}: expected {ctx['expected']}, got {show_value(value)}"
    if kind in _TYPE_NAMES or kind in _PARSING_NAMES or kind.endswith("_parsing"):
        expected = _TYPE_NAMES.get(kind) or _PARSING_NAMES.get(kind, "another value")
        hint = " (quote it to make it text)" if kind == "string_type" and isinstance(value, int | float) else ""
        return f"{field_label}: expected {expected}, got {show_value(value)}{hint}"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        relation = "at least" if kind == "too_short" else "at most"
        return (
            f"{field_label}: needs {relation} {bound} item{'s' if bound != 1 else ''}, got {ctx.get('actual_length')}"
        )
    if kind in ("string_too_long", "string_too_short"):
        bound = ctx.get("max_length") if kind == "string_too_long" else ctx.get("min_length")
        relation = "at most" if kind == "string_too_long" else "at least"
        return f"{field_label}: must have {relation} {bound} characters, got {show_value(value)}"
    if kind in _COMPARISONS:
        symbol, bound_key = _COMPARISONS[kind]
        return f"{field_label}: must be {symbol} {ctx.get(bound_key)}, got {show_value(value)}"
    if kind.startswith(("ip_v4", "ip_any")):
        what = "an IPv4 network such as 10.0.0.0/24" if "network" in kind else "an IPv4 address"
        return f"{field_label}: expected {what}, got {show_value(value)}"
    message = str(raw["msg"])
    return f"{field_label}: {message[:1].lower()}{message[1:]}"


_PARSING_NAMES = {
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "bool_parsing": "true or false",
}

_COMPARISONS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _hook_events() -> list[str]:
    heads = ("vm", "image", "network", "securitygroup", "datastore", "host", "marketplace", "hook", "apply", "drift")
    tails = [
        "created", "updated", "replaced", "deposed", "imported", "running", "stopped", "suspended", "failed",
        "deleted", "unknown", "migrated", "error", "started", "finished", "partial", "interrupted", "detected",
    ]  # fmt: skip
    return [f"{h}.{t}" for h in heads for t in tails if re.fullmatch(HOOK_EVENT_PATTERN, f"{h}.{t}")]


HOOK_EVENTS: tuple[str, ...] = (*_hook_events(), "*")
"""Every event a hook can be registered for (``*`` is all of them)."""


def _pattern_message(error: _Error, field_label: str, value: object, pattern: str) -> str:
    shown = show_value(value)
    if pattern == NAME_PATTERN:
        note = non_ascii_note("name", value)
        return (
            f"{field_label}: invalid name {show_value(value, ascii_only=True)}: {note + '; ' if note else ''}"
            "use lower-case letters, digits and '-', starting and ending with a letter or digit"
        )
    if pattern == HOOK_EVENT_PATTERN:
        suggestion = closest_match(str(value), HOOK_EVENTS)
        hint = f", did you mean '{suggestion}'?" if suggestion else f"; expected one of {', '.join(HOOK_EVENTS)}"
        return f"{field_label}: unknown event {shown}{hint}"
    if error.on_key and "env" in error.path:
        return f"{field_label}: invalid variable name {shown}: use letters, digits and '_', not starting with a digit"
    if error.on_key:
        return (
            f"{field_label}: invalid key {shown}: use letters, digits and '-', '_', '.', '/', "
            "starting and ending with a letter or digit"
        )
    if error.path and error.path[-1] == "marketplace":
        return (
            f"{field_label}: invalid marketplace source {shown}: "
            "expected MARKETPLACE/APP or MARKETPLACE/APP@VERSION, such as hub/debian-12"
        )
    if len(error.path) >= 2 and error.path[-2] == "dependsOn":
        return f"{field_label}: invalid reference {shown}: expected KIND/NAME, such as network/lan"
    if error.path and (error.path[-1] == "ports" or (len(error.path) >= 2 and error.path[-2] == "ports")):
        return f"{field_label}: invalid port {shown}: expected a port (22) or a range (8000-8080)"
    if pattern == "^/":
        return f"{field_label}: expected an absolute path (starting with '/'), got {shown}"
    if pattern == "^https?://":
        return f"{field_label}: expected an http:// or https:// URL, got {shown}"
    if error.path and error.path[-1] == "sha256":
        return f"{field_label}: invalid sha256 {shown}: expected 64 lower-case hexadecimal digits"
    return f"{field_label}: invalid value {shown}: must match {pattern}"
