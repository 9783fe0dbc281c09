"""What every plan renderer agrees on: which field changes are shown, how values print, what stays secret.

Used by the text, JSON and DOT renderers of this package, so that the three outputs of one plan never disagree
about a field (a secret hidden in one and shown in another would be a leak). Pure functions.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from nebctl.core.fields import FieldChange
from nebctl.core.keys import ResourceKey
from nebctl.core.plans import ChangeType
from nebctl.core.quantities import format_quantity

SENSITIVE = "(sensitive)"

# Last path segments whose integer values are byte counts (VM memory, disk sizes, a host's reserved memory).
# Ratios with the same name (``overcommit.memory: 1.5``) are floats and stay as they are.
BYTE_FIELDS = frozenset({"memory", "size"})

_LAST_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[\d+\])*$")
# Strings made only of these characters print between quotes as they are; anything else goes through json.dumps.
_PLAIN = re.compile(r'[^"\\\x00-\x1f\x7f]*')

VERBS = {
    ChangeType.CREATE: "will be created",
    ChangeType.UPDATE: "will be updated in-place",
    ChangeType.REPLACE: "must be replaced",
    ChangeType.DELETE: "will be destroyed",
    ChangeType.NOOP: "has no changes",
}


def shown_fields(fields: Iterable[FieldChange]) -> list[FieldChange]:
    """The field changes worth showing: an unset field staying unset is not a change, and the comparison of a
    missing document yields an artefact with an empty path (``flatten({})``) that names no field."""
    return [change for change in fields if change.path and change.before != change.after]


def is_bytes(path: str, value: Any) -> bool:
    if type(value) is not int:  # bool is an int subclass, and floats are ratios
        return False
    match = _LAST_SEGMENT.search(path)
    return match is not None and match.group(1) in BYTE_FIELDS


def quote(text: str) -> str:
    # The fast path matters: a 100,000-VM plan prints millions of strings.
    if _PLAIN.fullmatch(text):
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


def format_value(path: str, value: Any) -> str:
    """A value as the text plan prints it: strings quoted, byte counts as quantities (``"2Gi"``), JSON else."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return quote(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f'"{format_quantity(value)}"' if is_bytes(path, value) else str(value)
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() else repr(value)
    if not value and isinstance(value, list | dict):
        return "[]" if isinstance(value, list) else "{}"  # common (``dns: []``), and json.dumps is slow
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a renderer builds millions of small, acyclic objects (lines,
    dicts): its collections, triggered by allocation counts, scan them over and over and cost several times the
    rendering itself on a 100,000-resource plan. Reference counting still frees everything."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def address(key: ResourceKey) -> str:
    return str(key)


def block_name(key: ResourceKey) -> str:
    """The quoted name in a block header: the namespace is part of it outside the default namespace."""
    full = str(key)
    prefix = f"{key.kind.short}/"
    name = key.name if full.startswith(prefix) else f"{key.namespace}/{key.name}"
    return quote(name)
