"""``core.jsontext.loads`` reads JSON text as ``json.loads`` does: the same value for everything ``json`` reads, but
for integers outside the 64-bit range (documented), and the same refusal of what it does not. The expected values are
written out by hand."""

from __future__ import annotations

import json
import math

import pytest

from nebctl.core import jsontext


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"b": [1, 2.5, null, true], "a": "ünïcødé"}', {"b": [1, 2.5, None, True], "a": "ünïcødé"}),
        (b'{"bytes": 1}', {"bytes": 1}),
        ("18446744073709551615", 18446744073709551615),  # the largest integer of the range, and the smallest
        ("[-9223372036854775808]", [-9223372036854775808]),
        ("[1e400]", [math.inf]),
        ('{"a": 1, "a": 2}', {"a": 2}),  # the last of a repeated key
        ('"\\ud800"', "\ud800"),  # an escaped lone surrogate, which json reads
    ],
)
def test_values_are_those_json_reads(text: str | bytes, expected: object) -> None:
    value = jsontext.loads(text)
    assert value == expected
    assert value == json.loads(text)


def test_integers_within_the_range_stay_integers() -> None:
    value = jsontext.loads('{"size": 9223372036854775807, "n": -5, "zero": 0}')
    assert value == {"size": 9223372036854775807, "n": -5, "zero": 0}
    assert all(type(v) is int for v in value.values())


def test_an_integer_outside_the_range_comes_back_as_the_nearest_float() -> None:
    # What the module says of orjson's reading: the one difference from ``json``, which nebctl never writes.
    value = jsontext.loads("[18446744073709551617, -9223372036854775809]")
    assert value == [18446744073709551616.0, -9223372036854775808.0] and all(type(v) is float for v in value)


def test_nan_and_infinity_as_json_writes_them() -> None:
    value = jsontext.loads("[NaN, Infinity, -Infinity]")
    assert math.isnan(value[0]) and value[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize("text", ["", "{", "[1,]", "{'a': 1}", "nul"])
def test_text_that_is_no_json_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        jsontext.loads(text)
