"""Property tests: the parser and the evaluator only ever fail with ExpressionError, whatever the input."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from nebctl.schemas.expressions import MAX_DEPTH, ExpressionError, parse

ATTRIBUTES = {"a": 1, "b": "2", "c": "x", "labels": {"zone": "a"}, "custom": {"gpu": "1"}}

# Fragments of the language, so generated texts are often valid and reach the evaluator.
FRAGMENTS = st.sampled_from(
    [
        "a",
        "b",
        "c",
        "labels.zone",
        "custom.gpu",
        "1",
        "2.5",
        "4Gi",
        "'x'",
        '"y"',
        "true",
        "false",
        "(",
        ")",
        "[",
        "]",
        ",",
        "and",
        "or",
        "not",
        "in",
        "&&",
        "||",
        "!",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "+",
        "-",
        "*",
        "/",
        " ",
        "=",
        ".",
        "'",
        "\\",
        "0",
        "missing",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_expression_error(text: str) -> None:
    try:
        parse(text)
    except ExpressionError as error:
        assert error.position is not None
        assert 0 <= error.position <= len(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(FRAGMENTS, max_size=40).map(" ".join))
def test_language_like_text_parses_and_evaluates_or_raises_expression_error(text: str) -> None:
    try:
        expression = parse(text)
    except ExpressionError as error:
        assert error.position is not None and 0 <= error.position <= len(text)
        return
    with contextlib.suppress(ExpressionError):
        expression.evaluate(ATTRIBUTES)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=MAX_DEPTH + 1, max_value=2000), st.sampled_from(["(", "not ", "-", "!", "["]))
def test_deep_nesting_is_refused_with_an_error_not_a_stack_overflow(depth: int, opener: str) -> None:
    try:
        parse(opener * depth + "1")
    except ExpressionError as error:
        assert "nested too deeply" in str(error) or "too long" in str(error)
    else:  # pragma: no cover - the assertion explains the failure
        raise AssertionError("a deep expression was accepted")
