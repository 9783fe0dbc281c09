"""Whether an order can be followed: the nodes of a graph of "waits for" edges that never come free (Kahn's
algorithm), which sit on a cycle or wait for one that does. Used where a cycle must be said plainly rather than
followed: documents referring to each other, and a plan's actions.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TypeVar

Node = TypeVar("Node", bound=Hashable)


def never_free(nodes: Iterable[Node], edges: Iterable[tuple[Node, Node]]) -> set[Node]:
    """The nodes of ``nodes`` that never come free when each edge ``(before, after)`` makes ``after`` wait for
    ``before``: none when the graph has no cycle. Every edge's ends are among ``nodes``."""
    waiting: dict[Node, int] = dict.fromkeys(nodes, 0)
    freeing: dict[Node, list[Node]] = {node: [] for node in waiting}
    for before, after in edges:
        freeing[before].append(after)
        waiting[after] += 1
    ready = [node for node, count in waiting.items() if count == 0]
    while ready:
        for after in freeing[ready.pop()]:
            waiting[after] -= 1
            if waiting[after] == 0:
                ready.append(after)
    return {node for node, count in waiting.items() if count > 0}
