"""``core.ordering.never_free``: the nodes that wait, through "waits for" edges, for a cycle."""

from __future__ import annotations

import pytest

from nebctl.core.ordering import never_free


@pytest.mark.parametrize(
    ("edges", "stuck"),
    [
        ([], set()),
        ([("a", "b"), ("b", "c"), ("a", "c")], set()),  # a chain and a shortcut: all come free
        ([("a", "a")], {"a"}),  # waits for itself
        ([("a", "b"), ("b", "a")], {"a", "b"}),
        ([("a", "b"), ("b", "c"), ("c", "b"), ("c", "d")], {"b", "c", "d"}),  # d waits behind the cycle; a is free
    ],
)
def test_the_nodes_never_free_are_those_on_or_behind_a_cycle(edges: list[tuple[str, str]], stuck: set[str]) -> None:
    assert never_free("abcd", edges) == stuck
