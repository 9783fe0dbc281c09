"""Placement expressions (``requirements`` and ``rank``): a small safe language of our own, never ``eval``.

INTERFACE (the full parser and evaluator replace this placeholder; keep these names and signatures):
- ``parse(text) -> Expression`` raises ``ExpressionError`` (a ``ValueError``) with the 0-based ``position``.
- ``Expression.evaluate(attributes) -> object`` evaluates against a mapping of host attributes (nested mappings
  for dotted names such as ``labels.zone``); missing names raise ``ExpressionError``.
- ``Expression.names`` is the set of dotted names the expression reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class ExpressionError(ValueError):
    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class Expression:
    text: str

    @property
    def names(self) -> frozenset[str]:
        return frozenset()

    def evaluate(self, attributes: Mapping[str, object]) -> object:
        raise ExpressionError("expression evaluation is not implemented yet")


def parse(text: str) -> Expression:
    if not text.strip():
        raise ExpressionError("empty expression", position=0)
    return Expression(text)
