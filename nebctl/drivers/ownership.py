"""The ownership document every nebctl-made live object carries, as JSON: one versioned format for all drivers.

The sim driver keeps it in each object's row, the libvirt driver in a domain's or network's ``<metadata>``
(``xmlbuild.base.OwnerElement``) and, for pools, image volumes and filters, in its host's ownership ledger
(``libvirt.ledger``), the exec driver hands it to its programs in every creating action's payload
and reads it back from their ``list`` action. ``nebctl recover`` (``controller.recovering``) rebuilds records
from it, and planning refuses to create over an object that carries it without a record (docs/ownership.md).

Version 1: ``{"format": "nebctl-owner/1", "stack", "kind", "namespace", "name", "incarnation",
"installation", "spec"}``. Version 0 is the bare ``[stack, kind, namespace, name]`` list older nebctl wrote;
it still reads, with no installation and no spec (such objects are named, never rebuilt).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from nebctl.core import jsontext
from nebctl.drivers.types import Ownership

FORMAT = "nebctl-owner/1"
VERSION = 1


class OwnershipFormatError(ValueError):
    """An ownership document that is not one this nebctl can read (a newer format, a damaged one)."""


def to_document(owner: Ownership) -> dict[str, Any]:
    """The JSON document of ``owner`` (format 1)."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "stack": owner.stack,
        "kind": owner.kind,
        "namespace": owner.namespace,
        "name": owner.name,
        "incarnation": owner.incarnation,
        "installation": owner.installation,
    }
    if owner.spec is not None:
        document["spec"] = owner.spec
    return document


def from_document(document: Any) -> Ownership:
    """The ownership a document (format 1, or the format-0 list) describes; ``OwnershipFormatError`` otherwise."""
    if isinstance(document, list) and len(document) == 4 and all(isinstance(part, str) for part in document):
        return Ownership(*document)
    if not isinstance(document, Mapping):
        raise OwnershipFormatError(f"an ownership document is a JSON object, not {type(document).__name__}")
    if document.get("format") != FORMAT:
        raise OwnershipFormatError(f"unknown ownership format {document.get('format')!r} (this nebctl reads {FORMAT})")
    try:
        spec = document.get("spec")
        return Ownership(
            stack=str(document["stack"]),
            kind=str(document["kind"]),
            namespace=str(document["namespace"]),
            name=str(document["name"]),
            incarnation=int(document.get("incarnation") or 0),
            installation=str(document.get("installation") or ""),
            spec=dict(spec) if isinstance(spec, Mapping) else None,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise OwnershipFormatError(f"damaged ownership document: {error}") from error


def from_payload(data: Any) -> Ownership:
    """The ownership an exec program hands back: the document it was given in a payload (``types.to_payload``
    of an ``Ownership``: no ``format`` member), or a format-1 document; ``OwnershipFormatError`` otherwise."""
    if isinstance(data, Mapping) and "format" not in data:
        data = {**data, "format": FORMAT}
    return from_document(data)


def dumps(owner: Ownership | None) -> str | None:
    """``owner`` as compact JSON text, None for no owner."""
    if owner is None:
        return None
    return json.dumps(to_document(owner), sort_keys=True, separators=(",", ":"))


def loads(text: str | None) -> Ownership | None:
    """The ownership in JSON ``text``; None for no text, and for text that is no ownership this nebctl reads
    (such an object is treated as not nebctl's: it is never touched). The objects of a resource spanning many
    hosts carry the same text on each: it is parsed once (the result is shared, and never to be changed)."""
    if not text:
        return None
    return _parsed(text)


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> Ownership | None:
    try:
        return from_document(jsontext.loads(text))
    except (ValueError, OwnershipFormatError):
        return None
