"""Field-level comparison of two spec documents, and the rules that say what a change to a field costs.

``flatten`` turns a spec (plain JSON data) into ``path -> value`` pairs with paths as users write them
(``disks[0].size``); ``compare`` lists the differences; ``Effect`` and ``FieldRule`` are how each reconciler
declares whether a change applies in place, needs a restart, forces a replacement or cannot be made.
Pure functions, used by the diff.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, overload


class Effect(StrEnum):
    """What a change costs, from cheapest to dearest. A resource's change takes its dearest field's effect."""

    NONE = "none"  # recorded only: no driver action (labels, lifecycle settings)
    IN_PLACE = "in-place"  # a driver action on the live object, without interruption
    RESTART = "restart"  # the VM is stopped, changed and started again
    REPLACE = "replace"  # the live object is deleted and created anew
    IMMUTABLE = "immutable"  # cannot be changed at all: the plan fails and says how to proceed

    @property
    def rank(self) -> int:
        return _EFFECT_ORDER.index(self)


_EFFECT_ORDER = [Effect.NONE, Effect.IN_PLACE, Effect.RESTART, Effect.REPLACE, Effect.IMMUTABLE]


@dataclass(frozen=True)
class FieldRule:
    """``pattern`` is a path with ``[*]`` for any list index (``disks[*].image``); it covers its sub-fields."""

    pattern: str
    effect: Effect
    why: str = ""


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    before: Any
    after: Any
    effect: Effect
    sensitive: bool = False
    why: str = ""

    @property
    def added(self) -> bool:
        return self.before is None and self.after is not None

    @property
    def removed(self) -> bool:
        return self.after is None and self.before is not None


_INDEX = re.compile(r"\[\d+\]")
_MISSING = object()


def flatten(document: Any, prefix: str = "") -> dict[str, Any]:
    """``{"disks": [{"size": 1}]}`` -> ``{"disks[0].size": 1}``. Empty containers are kept as leaves so that
    adding a first element reads as a change of ``disks``, not of nothing."""
    flat: dict[str, Any] = {}
    if isinstance(document, Mapping) and document:
        for name, value in document.items():
            flat.update(flatten(value, f"{prefix}.{name}" if prefix else str(name)))
    elif isinstance(document, list) and document:
        for index, value in enumerate(document):
            flat.update(flatten(value, f"{prefix}[{index}]"))
    elif prefix:  # a whole empty document has no fields at all
        flat[prefix] = document
    return flat


@functools.lru_cache(maxsize=8192)  # the same few paths for every resource of a kind
def generic_path(path: str) -> str:
    """``disks[3].size`` -> ``disks[*].size``."""
    return _INDEX.sub("[*]", path)


def _covers(pattern: str, path: str) -> bool:
    return path == pattern or path.startswith((pattern + ".", pattern + "["))


def rule_for(path: str, rules: Sequence[FieldRule], default: FieldRule) -> FieldRule:
    """The most specific rule whose pattern covers ``path`` (longest pattern wins)."""
    generic = generic_path(path)
    best: FieldRule | None = None
    for rule in rules:
        if _covers(rule.pattern, generic) and (best is None or len(rule.pattern) > len(best.pattern)):
            best = rule
    return best or default


def is_ignored(path: str, ignored: Iterable[str]) -> bool:
    """Whether ``path`` falls under one of ``lifecycle.ignoreChanges`` (exact or generic paths)."""
    generic = generic_path(path)
    return any(_covers(pattern, path) or _covers(pattern, generic) for pattern in ignored)


def compare(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    *,
    rules: Sequence[FieldRule],
    default: FieldRule,
    sensitive: Sequence[str] = (),
    ignored: Iterable[str] = (),
) -> list[FieldChange]:
    """The field changes from ``before`` to ``after``, in path order, each with its effect.

    An absent field and a null one are the same (an optional block such as ``cloudInit`` that appears reads as
    its set fields, not as nulls), and the empty container a list or map was before its first element (or after
    its last) is not a change of its own. A list element added or removed as a whole costs what its list's rule
    says (a new disk is attached with a restart), not what a rule for one of its fields says (changing the
    image of an existing disk replaces the VM)."""
    # Not ``flatten(before or {})``: flattening an empty mapping gives the bogus leaf ``"" -> {}``.
    old = flatten(before) if before else {}
    new = flatten(after) if after else {}
    ignored = tuple(ignored)
    old_elements: set[str] | None = None
    new_elements: set[str] | None = None
    changes = []
    for path in sorted(old.keys() | new.keys(), key=_path_sort_key):
        was, now = old.get(path, _MISSING), new.get(path, _MISSING)
        if was == now or is_ignored(path, ignored):
            continue
        if (was is None or was is _MISSING) and (now is None or now is _MISSING):
            continue
        if (was is _MISSING and _hollow(now, path, old)) or (now is _MISSING and _hollow(was, path, new)):
            continue
        decisive = path
        if (was is _MISSING or now is _MISSING) and "[" in path:
            if old_elements is None or new_elements is None:
                old_elements, new_elements = _elements(old), _elements(new)
            decisive = _whole_element_container(path, old_elements if was is _MISSING else new_elements) or path
        rule = rule_for(decisive, rules, default)
        changes.append(
            FieldChange(
                path=path,
                before=None if was is _MISSING else was,
                after=None if now is _MISSING else now,
                effect=rule.effect,
                sensitive=any(_covers(pattern, generic_path(path)) for pattern in sensitive),
                why=rule.why,
            )
        )
    return changes


def _hollow(value: Any, path: str, other: Mapping[str, Any]) -> bool:
    """Whether ``value`` is an empty container whose place the other side fills with elements."""
    if not isinstance(value, (list, dict)) or value:
        return False
    return any(key.startswith((path + ".", path + "[")) for key in other)


def _elements(flat: Mapping[str, Any]) -> set[str]:
    """Every list element present in a flattened document: ``disks[0]``, ``nics[1]``, ``rules[0].ports[2]``..."""
    return {path[: match.end()] for path in flat for match in _INDEX.finditer(path)}


def _whole_element_container(path: str, elements_of_other_side: set[str]) -> str | None:
    """The list (``disks``) whose element holding ``path`` the other side lacks entirely, outermost first."""
    for match in _INDEX.finditer(path):
        if path[: match.end()] not in elements_of_other_side:
            return path[: match.start()]
    return None


@functools.lru_cache(maxsize=8192)  # the same few paths for every resource of a kind
def _path_sort_key(path: str) -> tuple[tuple[int, int, str], ...]:
    # Sort list indices numerically so disks[10] comes after disks[2]; an index sorts before a name, so a
    # field that is a list on one side and a map on the other still sorts instead of raising.
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in _PATH_PARTS.split(path) if part)


_PATH_PARTS = re.compile(r"[.\[\]]+")


def added(after: Mapping[str, Any], *, sensitive: Sequence[str] = ()) -> list[FieldChange]:
    """The fields of a new resource: what ``compare(None, after, ...)`` lists with a rule of no effect, without
    the rule and list-element lookups that only a change needs (a full plan lists every field of everything)."""
    new = flatten(after) if after else {}
    changes = []
    for path in sorted(new, key=_path_sort_key):
        value = new[path]
        if value is None:
            continue  # absent and null are the same (see ``compare``)
        generic = generic_path(path)
        changes.append(
            FieldChange(
                path=path,
                before=None,
                after=value,
                effect=Effect.NONE,
                sensitive=any(_covers(pattern, generic) for pattern in sensitive),
            )
        )
    return changes


class AddedFields(Sequence[FieldChange]):
    """The fields of a new resource, as ``added(spec, sensitive=...)`` lists them, listed when read.

    A full plan of 100,000 VMs lists millions of fields that only a renderer ever reads, once: holding them as
    ``FieldChange`` values was the largest part of such a plan's memory. This holds the resolved spec instead
    (the planner keeps it anyway, it is what the resource's record becomes) and lists its fields on each read;
    the spec must not change afterwards. It reads as, and compares equal to, the tuple of those fields."""

    __slots__ = ("_sensitive", "_spec")

    def __init__(self, spec: Mapping[str, Any], sensitive: Sequence[str] = ()) -> None:
        self._spec = spec
        self._sensitive = sensitive  # the reconciler's own list, not a copy per resource

    def listed(self) -> tuple[FieldChange, ...]:
        return tuple(added(self._spec, sensitive=self._sensitive))

    def __iter__(self) -> Iterator[FieldChange]:
        return iter(self.listed())

    def __len__(self) -> int:
        return len(self.listed())

    @overload
    def __getitem__(self, index: int) -> FieldChange: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[FieldChange, ...]: ...

    def __getitem__(self, index: int | slice) -> FieldChange | tuple[FieldChange, ...]:
        return self.listed()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AddedFields):
            return self.listed() == other.listed()
        if isinstance(other, tuple):
            return self.listed() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.listed())

    def __repr__(self) -> str:
        return repr(self.listed())


def dearest(changes: Iterable[FieldChange]) -> Effect:
    return max((change.effect for change in changes), key=lambda effect: effect.rank, default=Effect.NONE)
