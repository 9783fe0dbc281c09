"""Checking one document on its own: a mapping with a known kind and apiVersion, scoped as its kind is, that
its kind's pydantic model accepts. What passes becomes a ``LoadedDocument``, positions kept for the
cross-document checks of ``schemas.validation``; what fails becomes diagnostics located at the offending field.

``schemas.loading`` calls ``check_document`` on the documents of both YAML readers; ``schemas.model_errors``
words the errors of a document that its model refuses.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field

import pydantic

from nebctl.core.keys import DEFAULT_NAMESPACE, KIND_ALIASES, Kind, ResourceKey
from nebctl.schemas.diagnostics import (
    DataPath,
    Diagnostic,
    SourceLocation,
    closest_match,
    escape_non_ascii,
    in_file_order,
    nearest_location,
    non_ascii_note,
    show_value,
    subject_of,
)
from nebctl.schemas.models import API_VERSION, MODEL_BY_KIND, AnyManifest
from nebctl.schemas.reading.raw_documents import RawDocument


@dataclass(frozen=True)
class LoadedDocument:
    """One valid document with the positions of its fields, for cross-document checks and error messages."""

    key: ResourceKey
    manifest: AnyManifest
    location: SourceLocation
    positions: Mapping[DataPath, SourceLocation] = field(repr=False, compare=False)
    key_positions: Mapping[DataPath, SourceLocation] = field(repr=False, compare=False)

    @property
    def subject(self) -> str:
        return subject_of(self.key.kind.value, self.key.namespace, self.key.name)

    def locate(self, *path: str | int) -> SourceLocation:
        """The position of the value at ``path``, or of its nearest enclosing value when it is absent."""
        return nearest_location(self.positions, path, self.location)


_KIND_NAMES = [kind.value for kind in Kind]
_SCALAR_NAMES = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def check_document(raw: RawDocument) -> tuple[LoadedDocument | None, list[Diagnostic]]:
    """The valid document, or None with the diagnostics of every problem found in it."""
    data = raw.data
    if not isinstance(data, dict):
        shape = "a list" if isinstance(data, list) else _SCALAR_NAMES.get(type(data), "a single value")
        message = f"a manifest must be a mapping with apiVersion, kind, metadata and spec, not {shape}"
        return None, [Diagnostic(raw.location, None, message)]

    diagnostics: list[Diagnostic] = []
    positions, keys = raw.positions, raw.key_positions
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    name = name if isinstance(name, str) else None
    namespace = namespace if isinstance(namespace, str) else None

    kind_value = data.get("kind")
    kind: Kind | None = None
    if "kind" not in data:
        diagnostics.append(Diagnostic(raw.location, None, f"missing 'kind': expected one of {', '.join(_KIND_NAMES)}"))
    elif kind_value in _KIND_NAMES:
        kind = Kind(kind_value)
    else:
        diagnostics.append(Diagnostic(positions[("kind",)], None, _unknown_kind_message(kind_value)))
    subject = subject_of(kind.value, namespace, name) if kind is not None else None

    api_version = data.get("apiVersion")
    if "apiVersion" not in data:
        diagnostics.append(Diagnostic(raw.location, subject, f"missing 'apiVersion': expected '{API_VERSION}'"))
    elif api_version != API_VERSION:
        diagnostics.append(
            Diagnostic(
                positions[("apiVersion",)],
                subject,
                f"unsupported apiVersion {show_value(api_version)}: expected '{API_VERSION}'",
            )
        )
    if kind is None:
        return None, diagnostics

    if kind.cluster_scoped and namespace not in (None, DEFAULT_NAMESPACE):
        diagnostics.append(
            Diagnostic(
                positions[("metadata", "namespace")],
                subject_of(kind.value, None, name),
                f"{kind.value} is cluster-scoped: it has no namespace (remove 'namespace: {namespace}')",
            )
        )
        subject = subject_of(kind.value, None, name)

    model = MODEL_BY_KIND[kind]
    # A wrong apiVersion was reported above; validating with the right one reports every other problem too.
    candidate = {**data, "apiVersion": API_VERSION}
    try:
        manifest = model.model_validate(candidate)
    except pydantic.ValidationError as error:
        # Imported on the first invalid document: loading a valid set (every apply that goes ahead) never needs
        # the wording of pydantic's errors (about 1 ms of import).
        from nebctl.schemas.model_errors import cross_field_diagnostics, translate_errors

        found = translate_errors(error, model, candidate, subject, raw)
        seen = {(d.location, d.message) for d in found}
        found += [
            d
            for d in cross_field_diagnostics(error, model, candidate, subject, raw)
            if (d.location, d.message) not in seen
        ]
        diagnostics.extend(found)
        return None, in_file_order(diagnostics)
    if diagnostics:
        return None, in_file_order(diagnostics)
    loaded = typing.cast(AnyManifest, manifest)
    key = ResourceKey.of(kind, loaded.metadata.name, loaded.metadata.namespace)
    document = LoadedDocument(
        key=key,
        manifest=loaded,
        location=raw.location,
        positions=types.MappingProxyType(positions),
        key_positions=types.MappingProxyType(keys),
    )
    return document, []


def _unknown_kind_message(value: object) -> str:
    if not isinstance(value, str):
        return f"'kind' must be a string, one of {', '.join(_KIND_NAMES)}; got {show_value(value)}"
    alias = KIND_ALIASES.get(value.strip().lower())
    suggestion = alias.value if alias is not None else closest_match(value, _KIND_NAMES)
    hint = f", did you mean '{suggestion}'?" if suggestion else f": expected one of {', '.join(_KIND_NAMES)}"
    note = non_ascii_note("kind", value)
    if note is not None:
        return f"unknown kind '{escape_non_ascii(value)}': {note}{hint.replace(', did', '; did', 1)}"
    return f"unknown kind '{value}'{hint}"
