"""Placement expressions (``requirements`` and ``rank``): a small, safe language of our own.

Users write these in a VM's ``placement`` (docs/placement.md). ``schemas.models.Placement`` parses them
when a manifest is validated, so a syntax error is reported with its position before anything runs, and
``controller.placement`` evaluates them against each host's attributes when it schedules VMs.

User text is never handed to ``eval``, ``compile`` or ``ast``: a hand-written tokenizer and a
recursive-descent parser build an immutable tree, and a small evaluator walks it. Both are pure.

The language (lowest precedence first)::

    or, ||                          both sides must be true/false; short-circuits
    and, &&
    not, !                          (``!`` is the same operator as ``not``, with the same precedence)
    == != < <= > >= in, not in      one comparison per level: ``a < b < c`` is an error, join with ``and``
    + -                             numbers; ``+`` also joins two texts
    * /
    - (unary)
    literals and names              4, 2.5, 4Gi, 512Mi, 10G, 'text', "text", true, false, ['a', 'b'],
                                    free_memory, labels.zone, custom.gpu, labels['topology/zone'], ( ... )

Quantities follow ``core.quantities`` (``Ki Mi Gi Ti Pi`` binary, ``K M G T P`` decimal) and are plain
integers of bytes once parsed. ``x in [...]`` tests membership in a list, ``'a' in text`` tests a substring,
and ``'gpu' in custom`` tests whether a key exists in a group of attributes.

Attributes come from monitoring as text as often as numbers (probe output is ``KEY=VALUE``), so a text
*attribute* that spells a number (``"8"``, ``"2.5"``, ``"16Gi"``) is read as that number when the other side
of a comparison or an arithmetic operator is a number. A text *literal* never is: ``'8' > 4`` is an error.

Every error is an ``ExpressionError`` (a ``ValueError``) carrying the 0-based ``position`` in the text, and
its message names the position and what was expected. Input length (``MAX_LENGTH``) and nesting depth
(``MAX_DEPTH``) are bounded, so a hostile expression can neither exhaust the stack nor take long to parse.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from nebctl.core.quantities import QuantityError, parse_quantity

MAX_LENGTH: Final = 4096
# Each level of nesting costs about ten Python frames in the parser; 32 levels stay far from the
# interpreter's recursion limit even when the caller is itself deep in a stack (pydantic, pytest).
MAX_DEPTH: Final = 32

KEYWORDS: Final = frozenset({"and", "or", "not", "in", "true", "false"})
_UNITS: Final = ("Ki", "Mi", "Gi", "Ti", "Pi", "K", "M", "G", "T", "P")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_]+")
_NUMERIC_TEXT = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$")
_TWO_CHAR_OPERATORS: Final = frozenset({"==", "!=", "<=", ">=", "&&", "||"})
_ONE_CHAR_OPERATORS: Final = frozenset("<>!+-*/()[],")
_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_COMPARISONS: Final = frozenset({"==", "!=", "<", "<=", ">", ">="})

Number = int | float


class ExpressionError(ValueError):
    """A syntax or evaluation error in a placement expression; ``position`` is the 0-based offset."""

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


# --- Tokens -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "number", "string", "name", "keyword", "operator" or "end"
    value: object  # the number, the text, the name's path (a tuple), or the keyword/operator spelling
    position: int
    source: str  # the text as written, for messages

    def describe(self) -> str:
        if self.kind == "end":
            return "end of expression"
        if self.kind == "string":
            return f"text {self.source}"
        if self.kind == "name":
            return f"name '{self.source}'"
        return f"'{self.source}'"


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an ``end`` token; raises ``ExpressionError``."""
    tokens: list[Token] = []
    length = len(text)
    index = 0
    while index < length:
        char = text[index]
        if char in " \t\r\n":
            index += 1
        elif char.isdigit() and char.isascii():
            token, index = _number(text, index)
            tokens.append(token)
        elif char == "_" or (char.isalpha() and char.isascii()):
            token, index = _word(text, index)
            tokens.append(token)
        elif char in "'\"":
            token, index = _string(text, index)
            tokens.append(token)
        elif text[index : index + 2] in _TWO_CHAR_OPERATORS:
            tokens.append(Token("operator", text[index : index + 2], index, text[index : index + 2]))
            index += 2
        elif char in _ONE_CHAR_OPERATORS:
            tokens.append(Token("operator", char, index, char))
            index += 1
        elif char in "=&|":
            raise ExpressionError(f"unexpected '{char}' at {index}; did you mean '{char * 2}'?", position=index)
        else:
            raise ExpressionError(f"unexpected character {char!r} at {index}", position=index)
    tokens.append(Token("end", None, length, ""))
    return tokens


def _number(text: str, start: int) -> tuple[Token, int]:
    match = _NUMBER.match(text, start)
    assert match is not None  # the caller saw a digit
    end = match.end()
    if text.startswith(".", end):
        raise ExpressionError(f"expected a digit after '.' at {end + 1}", position=end + 1)
    unit_match = _IDENTIFIER.match(text, end)
    if unit_match is None:
        digits = match.group()
        value: Number = float(digits) if "." in digits else int(digits)
        return Token("number", value, start, digits), end
    unit = unit_match.group()
    if unit not in _UNITS:
        raise ExpressionError(f"unknown unit '{unit}' at {end}; expected one of {', '.join(_UNITS)}", position=end)
    source = text[start : unit_match.end()]
    try:
        quantity = parse_quantity(source)
    except QuantityError as error:
        raise ExpressionError(f"{error} at {start}", position=start) from None
    return Token("number", quantity, start, source), unit_match.end()


def _word(text: str, start: int) -> tuple[Token, int]:
    match = _IDENTIFIER.match(text, start)
    assert match is not None  # the caller saw a letter or '_'
    word = match.group()
    end = match.end()
    if word in KEYWORDS:
        return Token("keyword", word, start, word), end
    path = [word]
    # After a dot any run of letters, digits and '_' is a segment, keywords included (labels.in is a label).
    while text.startswith(".", end):
        segment = _SEGMENT.match(text, end + 1)
        if segment is None:
            raise ExpressionError(f"expected a name after '.' at {end + 1}", position=end + 1)
        path.append(segment.group())
        end = segment.end()
    return Token("name", tuple(path), start, text[start:end]), end


def _string(text: str, start: int) -> tuple[Token, int]:
    quote = text[start]
    chars: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == quote:
            return Token("string", "".join(chars), start, text[start : index + 1]), index + 1
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if escaped not in _ESCAPES:
                raise ExpressionError(
                    f"unknown escape '\\{escaped}' at {index}; use \\\\, \\', \\\", \\n or \\t", position=index
                )
            chars.append(_ESCAPES[escaped])
            index += 2
        else:
            chars.append(char)
            index += 1
    raise ExpressionError(f"unterminated text starting at {start}; expected a closing {quote}", position=start)


# --- The tree ---------------------------------------------------------------------------------------------
# Nodes are immutable. Operator chains (a and b and c, a + b - c) are n-ary nodes rather than nested binary
# ones, so the tree's depth follows the nesting the user wrote, which MAX_DEPTH bounds, and evaluating a long
# flat chain cannot recurse deeply either.


class Node:
    __slots__ = ()
    position: int

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        raise NotImplementedError

    def children(self) -> tuple[Node, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: object
    position: int

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        return self.value


@dataclass(frozen=True, slots=True)
class Name(Node):
    path: tuple[str, ...]
    position: int

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        current: object = attributes
        for segment in self.path:
            if not isinstance(current, Mapping) or segment not in current:
                raise ExpressionError(_unknown_name(self.dotted, attributes, self.position), position=self.position)
            current = current[segment]
        return current


@dataclass(frozen=True, slots=True)
class ListNode(Node):
    items: tuple[Node, ...]
    position: int

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        return tuple(item.evaluate(attributes) for item in self.items)

    def children(self) -> tuple[Node, ...]:
        return self.items


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node
    position: int

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        return not _boolean(self.operand.evaluate(attributes), "not", self.position)

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class Negate(Node):
    operand: Node
    position: int

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        value = _number_operand(self.operand, self.operand.evaluate(attributes), "-", self.position)
        return -value

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class Logical(Node):
    operator: str  # "and" or "or"
    operands: tuple[Node, ...]
    position: int  # of the first operator

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        # Short-circuit like Python, so `'gpu' in custom and custom.gpu > 0` is safe on hosts without the key.
        stop_on = self.operator == "or"
        for operand in self.operands:
            if _boolean(operand.evaluate(attributes), self.operator, self.position) is stop_on:
                return stop_on
        return not stop_on

    def children(self) -> tuple[Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class Compare(Node):
    operator: str  # one of == != < <= > >= in, "not in"
    left: Node
    right: Node
    position: int

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        left = self.left.evaluate(attributes)
        right = self.right.evaluate(attributes)
        if self.operator == "in":
            return _contains(self.left, left, self.right, right, self.position)
        if self.operator == "not in":
            return not _contains(self.left, left, self.right, right, self.position)
        left, right = _coerce(self.left, left, self.right, right)
        if self.operator in ("==", "!="):
            equal = _equal(left, right, self.operator, self.position)
            return equal if self.operator == "==" else not equal
        return _order(left, right, self.operator, self.position)

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, slots=True)
class Arithmetic(Node):
    first: Node
    rest: tuple[tuple[str, int, Node], ...]  # (operator, its position, operand)
    position: int

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        result = self.first.evaluate(attributes)
        result_node = self.first
        for operator, position, node in self.rest:
            value = node.evaluate(attributes)
            result = _arithmetic(operator, (result_node, result), (node, value), position)
            result_node = self  # an intermediate result is no longer an attribute: no text-to-number reading
        return result

    def children(self) -> tuple[Node, ...]:
        return (self.first, *(node for _, _, node in self.rest))


# --- Evaluation helpers -----------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"text {value!r}"
    if _is_number(value):
        return f"number {value}"
    if isinstance(value, tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a group of names"
    return f"a {type(value).__name__}"


def _text_as_number(text: str) -> Number | None:
    if _NUMERIC_TEXT.match(text):
        stripped = text.strip()
        return float(stripped) if "." in stripped else int(stripped)
    try:
        return parse_quantity(text)
    except QuantityError:
        return None


def _coerce(left_node: Node, left: object, right_node: Node, right: object) -> tuple[object, object]:
    """Read a text attribute as a number when the other side is a number (see the module docstring)."""
    if isinstance(left, str) and _is_number(right) and isinstance(left_node, Name):
        number = _text_as_number(left)
        return (left if number is None else number), right
    if isinstance(right, str) and _is_number(left) and isinstance(right_node, Name):
        number = _text_as_number(right)
        return left, (right if number is None else number)
    return left, right


def _same_kind(left: object, right: object) -> bool:
    if _is_number(left):
        return _is_number(right)
    return type(left) is type(right) or (isinstance(left, str) and isinstance(right, str))


def _equal(left: object, right: object, operator: str, position: int) -> bool:
    if isinstance(left, str | bool | int | float) and _same_kind(left, right):
        return left == right
    raise ExpressionError(
        f"cannot compare {_show(left)} with {_show(right)} using '{operator}' at {position}", position=position
    )


def _order(left: object, right: object, operator: str, position: int) -> bool:
    # Python compares ints and floats exactly (no overflow), and texts by code point.
    if (_is_number(left) and _is_number(right)) or (isinstance(left, str) and isinstance(right, str)):
        a: Any = left
        b: Any = right
        if operator == "<":
            return bool(a < b)
        if operator == "<=":
            return bool(a <= b)
        if operator == ">":
            return bool(a > b)
        return bool(a >= b)
    raise ExpressionError(
        f"cannot compare {_show(left)} with {_show(right)} using '{operator}' at {position}", position=position
    )


def _contains(left_node: Node, left: object, right_node: Node, right: object, position: int) -> bool:
    if isinstance(right, tuple):
        items = right_node.items if isinstance(right_node, ListNode) else (right_node,) * len(right)
        for item_node, item in zip(items, right, strict=True):
            a, b = _coerce(left_node, left, item_node, item)
            if _same_kind(a, b) and isinstance(a, str | bool | int | float) and a == b:
                return True
        return False
    if isinstance(right, str | Mapping):
        if not isinstance(left, str):
            raise ExpressionError(f"cannot look for {_show(left)} in {_show(right)} at {position}", position=position)
        return left in right
    raise ExpressionError(
        f"'in' needs a list, a text or a group of names on its right, got {_show(right)} at {position}",
        position=position,
    )


def _boolean(value: object, operator: str, position: int) -> bool:
    if isinstance(value, bool):
        return value
    raise ExpressionError(f"'{operator}' needs true or false, got {_show(value)} at {position}", position=position)


def _number_operand(node: Node, value: object, operator: str, position: int) -> Number:
    if isinstance(value, str) and isinstance(node, Name):
        number = _text_as_number(value)
        if number is not None:
            return number
    if _is_number(value):
        return value  # type: ignore[return-value]
    raise ExpressionError(f"'{operator}' needs a number, got {_show(value)} at {position}", position=position)


def _arithmetic(operator: str, left: tuple[Node, object], right: tuple[Node, object], position: int) -> object:
    left_node, left_value = left
    right_node, right_value = right
    if operator == "+" and isinstance(left_value, str) and isinstance(right_value, str):
        return left_value + right_value
    a = _number_operand(left_node, left_value, operator, position)
    b = _number_operand(right_node, right_value, operator, position)
    try:
        if operator == "+":
            return a + b
        if operator == "-":
            return a - b
        if operator == "*":
            return a * b
        if b == 0:
            raise ExpressionError(f"division by zero at {position}", position=position)
        return a / b
    except OverflowError:
        raise ExpressionError(f"number too large at {position}", position=position) from None


def _flatten(attributes: Mapping[Any, object], prefix: str = "", depth: int = 0) -> Iterator[str]:
    for key, value in attributes.items():
        if not isinstance(key, str):
            continue
        yield prefix + key
        if isinstance(value, Mapping) and depth < 2:
            yield from _flatten(value, f"{prefix}{key}.", depth + 1)


def _unknown_name(name: str, attributes: Mapping[str, object], position: int) -> str:
    message = f"unknown name '{name}' at {position}"
    close = difflib.get_close_matches(name, sorted(_flatten(attributes)), n=1, cutoff=0.6)
    if close:
        message += f"; did you mean '{close[0]}'?"
    return message


# --- The parser -------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at(self, *spellings: str) -> bool:
        token = self.token
        return token.kind in ("operator", "keyword") and token.value in spellings

    def fail(self, expected: str) -> ExpressionError:
        token = self.token
        return ExpressionError(
            f"unexpected {token.describe()} at {token.position}; expected {expected}", position=token.position
        )

    def enter(self, position: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression nested too deeply at {position} (at most {MAX_DEPTH} levels)", position=position
            )

    def parse(self) -> Node:
        node = self.expression()
        if self.token.kind != "end":
            if self.at(*_COMPARISONS, "in") or (self.at("not") and self._next_is_in()):
                raise ExpressionError(
                    f"comparisons cannot be chained at {self.token.position}; join them with 'and'",
                    position=self.token.position,
                )
            raise self.fail("an operator or the end of the expression")
        return node

    def expression(self) -> Node:
        return self.logical("or", ("or", "||"), self.conjunction)

    def conjunction(self) -> Node:
        return self.logical("and", ("and", "&&"), self.negation)

    def logical(self, name: str, spellings: tuple[str, ...], parse_operand: Callable[[], Node]) -> Node:
        first = parse_operand()
        if not self.at(*spellings):
            return first
        position = self.token.position
        operands = [first]
        while self.at(*spellings):
            self.advance()
            operands.append(parse_operand())
        return Logical(name, tuple(operands), position)

    def negation(self) -> Node:
        if self.at("not", "!"):
            token = self.advance()
            self.enter(token.position)
            operand = self.negation()
            self.depth -= 1
            return Not(operand, token.position)
        return self.comparison()

    def _next_is_in(self) -> bool:
        following = self.tokens[self.index + 1]
        return following.kind == "keyword" and following.value == "in"

    def comparison(self) -> Node:
        left = self.additive()
        if self.at(*_COMPARISONS, "in"):
            token = self.advance()
            operator = str(token.value)
        elif self.at("not"):
            token = self.token
            if not self._next_is_in():
                raise ExpressionError(f"expected 'in' after 'not' at {token.position}", position=token.position)
            self.advance()
            self.advance()
            operator = "not in"
        else:
            return left
        right = self.additive()
        return Compare(operator, left, right, token.position)

    def additive(self) -> Node:
        return self.arithmetic(("+", "-"), self.term)

    def term(self) -> Node:
        return self.arithmetic(("*", "/"), self.unary)

    def arithmetic(self, operators: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        first = operand()
        rest: list[tuple[str, int, Node]] = []
        while self.token.kind == "operator" and self.token.value in operators:
            token = self.advance()
            rest.append((str(token.value), token.position, operand()))
        if not rest:
            return first
        return Arithmetic(first, tuple(rest), rest[0][1])

    def unary(self) -> Node:
        if self.token.kind == "operator" and self.token.value == "-":
            token = self.advance()
            self.enter(token.position)
            operand = self.unary()
            self.depth -= 1
            return Negate(operand, token.position)
        return self.primary()

    def primary(self) -> Node:
        token = self.token
        if token.kind in ("number", "string"):
            self.advance()
            return Literal(token.value, token.position)
        if token.kind == "keyword" and token.value in ("true", "false"):
            self.advance()
            return Literal(token.value == "true", token.position)
        if token.kind == "name":
            self.advance()
            assert isinstance(token.value, tuple)
            return self.subscripts(list(token.value), token.position)
        if self.at("("):
            self.advance()
            self.enter(token.position)
            inner = self.expression()
            self.depth -= 1
            if not self.at(")"):
                raise self.fail(f"')' to close the '(' at {token.position}")
            self.advance()
            return inner
        if self.at("["):
            return self.list_literal()
        raise self.fail("a value")

    def subscripts(self, path: list[str], position: int) -> Node:
        # labels['topology.kubernetes.io/zone'] reaches keys that a dotted name cannot spell.
        while self.at("["):
            self.advance()
            key = self.token
            if key.kind != "string":
                raise self.fail("a key in quotes inside [...]")
            self.advance()
            if not self.at("]"):
                raise self.fail("']'")
            self.advance()
            assert isinstance(key.value, str)
            path.append(key.value)
        return Name(tuple(path), position)

    def list_literal(self) -> Node:
        opening = self.advance()
        self.enter(opening.position)
        items: list[Node] = []
        while not self.at("]"):
            items.append(self.expression())
            if self.at(","):
                self.advance()
            elif not self.at("]"):
                raise self.fail(f"',' or ']' to close the '[' at {opening.position}")
        self.advance()
        self.depth -= 1
        return ListNode(tuple(items), opening.position)


def _names(node: Node) -> Iterator[str]:
    if isinstance(node, Name):
        yield node.dotted
    for child in node.children():
        yield from _names(child)


# --- Public interface -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its source ``text``, the dotted ``names`` it reads, and ``evaluate``."""

    text: str
    root: Node = field(repr=False, compare=False)
    names: frozenset[str] = field(repr=False, compare=False)

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        """The expression's value for ``attributes`` (nested mappings for dotted names); raises ExpressionError."""
        return self.root.evaluate(attributes)


def parse(text: str) -> Expression:
    """Parse ``text`` into an ``Expression``; raises ``ExpressionError`` with the position of the problem."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is too long ({len(text)} characters; at most {MAX_LENGTH})", position=MAX_LENGTH
        )
    if not text.strip():
        raise ExpressionError("empty expression at 0; expected a value", position=0)
    root = _Parser(text).parse()
    return Expression(text, root, frozenset(_names(root)))


def to_number(value: object) -> int | float | None:
    """``value`` as a number: numbers as they are, texts that spell one (``"8"``, ``"16Gi"``) read; else None.

    The scheduler uses it for ``rank`` results, which may be a probe's text attribute on its own.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        return _text_as_number(value)
    return None
