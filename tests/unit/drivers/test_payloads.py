"""``drivers.types.to_payload``: driver values as plain JSON data, what an external program is handed and what the
sim keeps of a definition. Each expectation is written out by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any

from nebctl.drivers.types import HookResult, to_payload


class Colour(StrEnum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


@dataclass(frozen=True)
class Inner:
    colour: Colour
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    labels: Any = field(default_factory=dict)
    items: list[Any] = field(default_factory=list)
    level: Level = Level.HIGH
    ratio: float = 0.5
    enabled: bool = True
    missing: None = None


def test_nested_values_become_plain_json_data() -> None:
    value = Outer(
        name="web",
        inner=Inner(Colour.RED, (1, 2)),
        labels=MappingProxyType({"tier": Colour.RED, 7: (Inner(Colour.RED, ()),)}),
        items=[Colour.RED, [True, None], {"k": 1.5}],
    )
    assert to_payload(value) == {
        "name": "web",
        "inner": {"colour": "red", "sizes": [1, 2]},
        "labels": {"tier": "red", "7": [{"colour": "red", "sizes": []}]},
        "items": ["red", [True, None], {"k": 1.5}],
        "level": 3,
        "ratio": 0.5,
        "enabled": True,
        "missing": None,
    }
    converted = to_payload(value)
    assert type(converted["inner"]["colour"]) is str  # the enum's value, not the enum
    assert type(converted["labels"]) is dict


def test_a_dataclass_type_itself_is_left_as_it_is() -> None:
    assert to_payload(HookResult) is HookResult
    assert to_payload([Inner]) == [Inner]


def test_a_driver_result_converts_field_by_field() -> None:
    result = HookResult(exit_code=None, stdout="out", stderr="", duration=1.25, timed_out=True)
    assert to_payload(result) == {
        "exit_code": None,
        "stdout": "out",
        "stderr": "",
        "duration": 1.25,
        "timed_out": True,
    }
