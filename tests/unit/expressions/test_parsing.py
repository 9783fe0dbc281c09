"""Parser decision tables: which texts parse, what they read, and the exact error for those that do not."""

from __future__ import annotations

import pytest

from nebctl.schemas.expressions import MAX_DEPTH, MAX_LENGTH, ExpressionError, parse

VALID = [
    ("1", frozenset()),
    ("free_memory >= 4Gi", {"free_memory"}),
    ("free_memory >= 4Gi and labels.zone == 'a'", {"free_memory", "labels.zone"}),
    ("labels.zone in ['a', 'b']", {"labels.zone"}),
    ("labels.zone not in ['a', \"b\",]", {"labels.zone"}),
    ("not custom.gpu", {"custom.gpu"}),
    ("!custom.gpu || x && y", {"custom.gpu", "x", "y"}),
    ("-(cpus - 1) * 2 / 3 + load", {"cpus", "load"}),
    ("labels['topology/zone'] == 'a'", {"labels.topology/zone"}),
    ("labels.in == 'x'", {"labels.in"}),
    ("custom.x_1.y2 > 0", {"custom.x_1.y2"}),
    ("'gpu' in custom", {"custom"}),
    ("[]", frozenset()),
    ("((true))", frozenset()),
    ("\t1\n<\r2 ", frozenset()),
]


@pytest.mark.parametrize(("text", "names"), VALID)
def test_valid_expressions_parse_and_report_the_names_they_read(text: str, names: set[str]) -> None:
    expression = parse(text)
    assert expression.text == text
    assert expression.names == frozenset(names)


def test_expressions_are_immutable_and_compare_by_text() -> None:
    assert parse("a == 1") == parse("a == 1")
    with pytest.raises(AttributeError):
        parse("a").text = "b"  # type: ignore[misc]


INVALID = [
    ("", 0, "empty expression at 0; expected a value"),
    ("   ", 0, "empty expression at 0; expected a value"),
    ("1 + )", 4, "unexpected ')' at 4; expected a value"),
    ("(1 + 2", 6, "unexpected end of expression at 6; expected ')' to close the '(' at 0"),
    ("free_memory >= 4Gi and (labels.zone == 'a'))", 43, "unexpected ')' at 43; expected an operator or the end"),
    ("a == ", 5, "unexpected end of expression at 5; expected a value"),
    ("a = 1", 2, "unexpected '=' at 2; did you mean '=='?"),
    ("a & b", 2, "unexpected '&' at 2; did you mean '&&'?"),
    ("a | b", 2, "unexpected '|' at 2; did you mean '||'?"),
    ("a $ b", 2, "unexpected character '$' at 2"),
    ("a < b < c", 6, "comparisons cannot be chained at 6; join them with 'and'"),
    ("a == b in c", 7, "comparisons cannot be chained at 7"),
    ("a not b", 2, "expected 'in' after 'not' at 2"),
    ("4Gb", 1, "unknown unit 'Gb' at 1; expected one of Ki, Mi, Gi, Ti, Pi, K, M, G, T, P"),
    ("4 Gi", 2, "unexpected name 'Gi' at 2"),
    ("0.3Ki", 0, "not a whole number of bytes at 0"),
    ("2000Pi", 0, "larger than 1Ei at 0"),
    ("1.", 2, "expected a digit after '.' at 2"),
    ("labels.", 7, "expected a name after '.' at 7"),
    ("'abc", 0, "unterminated text starting at 0; expected a closing '"),
    ('x == "abc', 5, 'unterminated text starting at 5; expected a closing "'),
    ("'a\\qb'", 2, "unknown escape '\\q' at 2"),
    ("[1, 2", 5, "unexpected end of expression at 5; expected ',' or ']' to close the '[' at 0"),
    ("[1 2]", 3, "unexpected '2' at 3; expected ',' or ']'"),
    ("labels[zone]", 7, "unexpected name 'zone' at 7; expected a key in quotes inside [...]"),
    ("labels['a'", 10, "unexpected end of expression at 10; expected ']'"),
    ("and", 0, "unexpected 'and' at 0; expected a value"),
    ("a and", 5, "unexpected end of expression at 5; expected a value"),
    ("()", 1, "unexpected ')' at 1; expected a value"),
    ("1 2", 2, "unexpected '2' at 2; expected an operator or the end of the expression"),
    ("é", 0, "unexpected character 'é' at 0"),
    ("x" * (MAX_LENGTH + 1), MAX_LENGTH, "expression is too long"),
    ("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1), MAX_DEPTH, "nested too deeply"),
    ("not " * (MAX_DEPTH + 1) + "true", 4 * MAX_DEPTH, "nested too deeply"),
    ("-" * (MAX_DEPTH + 1) + "1", MAX_DEPTH, "nested too deeply"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), MAX_DEPTH, "nested too deeply"),
]


@pytest.mark.parametrize(("text", "position", "message"), INVALID)
def test_invalid_expressions_say_where_and_what_was_expected(text: str, position: int, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert caught.value.position == position
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert parse("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH).evaluate({}) == 1


def test_a_long_flat_chain_within_the_length_limit_evaluates_without_deep_recursion() -> None:
    text = " + ".join(["1"] * (MAX_LENGTH // 4))
    assert parse(text).evaluate({}) == MAX_LENGTH // 4
    conjunction = " and ".join(["true"] * (MAX_LENGTH // 10))
    assert parse(conjunction).evaluate({}) is True
