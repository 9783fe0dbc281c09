"""Evaluator decision tables: values, text attributes read as numbers, and the type errors users get."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from nebctl.schemas.expressions import ExpressionError, parse, to_number

GI = 1024**3

HOST: Mapping[str, object] = {
    "name": "kvm-1",
    "cpus": 16,
    "memory": 64 * GI,
    "free_memory": 8 * GI,
    "free_cpu": 6.5,
    "load": 0.25,
    "labels": {"zone": "a", "rack": "12", "topology/zone": "eu-1"},
    "custom": {"gpu": "2", "scratch": "100Gi", "ratio": "0.5", "model": "a100"},
    "gpu": "2",
}

VALUES = [
    ("free_memory >= 4Gi and labels.zone == 'a'", True),
    ("free_memory >= 10G", False),
    ("free_memory == 8192Mi", True),
    ("free_memory / 1Gi", 8.0),
    ("free_cpu - 0.5", 6.0),
    ("-cpus", -16),
    ("--cpus", 16),
    ("2 + 3 * 4", 14),
    ("(2 + 3) * 4", 20),
    ("10 - 4 - 3", 3),
    ("8 / 2 / 2", 2.0),
    ("1.5Ki", 1536),
    ("1K + 1Ki", 2024),
    ("labels.zone", "a"),
    ("labels.zone + '-' + name", "a-kvm-1"),
    ("labels['topology/zone'] == 'eu-1'", True),
    ("labels.zone in ['a', 'b']", True),
    ("labels.zone not in ['a', 'b']", False),
    ("labels.zone in []", False),
    ("'gpu' in custom", True),
    ("'fpga' in custom", False),
    ("'fpga' not in custom", True),
    ("'100' in custom.model", True),
    ("cpus in [8, 16]", True),
    ("custom.gpu in [1, 2]", True),
    ("custom.gpu > 1", True),
    ("custom.gpu * 2", 4),
    ("gpu >= 2", True),
    ("custom.scratch >= 50Gi", True),
    ("custom.ratio < 1", True),
    ("labels.rack == 12", True),
    ("labels.rack == '12'", True),
    ("custom.model == 'a100'", True),
    ("'a' < 'b'", True),
    ("'b' <= 'a'", False),
    ("true == true", True),
    ("true != false", True),
    ("not true", False),
    ("!false", True),
    ("not 1 > 2", True),
    ("true or missing.name", True),
    ("false and missing.name", False),
    ("'fpga' in custom and custom.fpga > 0", False),
    ("false || false || true", True),
    ("true && true && false", False),
    ("[1, 'a', true]", (1, "a", True)),
    ("load * 100 < 50", True),
    ("1 != 1.0", False),
    ("'a\\'b\\\"\\n\\t\\\\'", "a'b\"\n\t\\"),
]


@pytest.mark.parametrize(("text", "value"), VALUES)
def test_values(text: str, value: object) -> None:
    result = parse(text).evaluate(HOST)
    assert result == value
    assert type(result) is type(value)


ERRORS = [
    ("'a' < 3", 4, "cannot compare text 'a' with number 3 using '<' at 4"),
    ("'8' > 4", 4, "cannot compare text '8' with number 4"),  # a literal is never read as a number
    ("custom.model > 4", 13, "cannot compare text 'a100' with number 4"),
    ("labels.zone == 1", 12, "cannot compare text 'a' with number 1 using '=='"),
    ("true == 1", 5, "cannot compare true with number 1"),
    ("labels == 'a'", 7, "cannot compare a group of names with text 'a'"),
    ("[1] == [1]", 4, "cannot compare a list with a list"),
    ("free_mem >= 4Gi", 0, "unknown name 'free_mem' at 0; did you mean 'free_memory'?"),
    ("labels.zon == 'a'", 0, "unknown name 'labels.zon' at 0; did you mean 'labels.zone'?"),
    ("qqqqq", 0, "unknown name 'qqqqq' at 0"),
    ("free_memory.x", 0, "unknown name 'free_memory.x'"),
    ("1 and true", 2, "'and' needs true or false, got number 1 at 2"),
    ("false or 'x'", 6, "'or' needs true or false, got text 'x'"),
    ("not 3", 0, "'not' needs true or false, got number 3 at 0"),
    ("-'a'", 0, "'-' needs a number, got text 'a' at 0"),
    ("-labels.zone", 0, "'-' needs a number, got text 'a'"),
    ("1 / 0", 2, "division by zero at 2"),
    ("1 / (cpus - 16)", 2, "division by zero at 2"),
    ("'a' * 2", 4, "'*' needs a number, got text 'a' at 4"),
    ("'a' + 1", 4, "'+' needs a number, got text 'a'"),
    ("1 in 'abc'", 2, "cannot look for number 1 in text 'abc' at 2"),
    ("'a' in 3", 4, "'in' needs a list, a text or a group of names on its right, got number 3 at 4"),
    ("true < false", 5, "cannot compare true with false using '<'"),
    ("9" * 320 + " * 1.5", 321, "number too large at 321"),
]


@pytest.mark.parametrize(("text", "position", "message"), ERRORS)
def test_type_errors_and_missing_names(text: str, position: int, message: str) -> None:
    expression = parse(text)
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate(HOST)
    assert caught.value.position == position
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (3, 3),
        (2.5, 2.5),
        ("8", 8),
        (" -3 ", -3),
        ("0.25", 0.25),
        ("2Gi", 2 * GI),
        ("abc", None),
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_to_number(value: object, number: object) -> None:
    assert to_number(value) == number
