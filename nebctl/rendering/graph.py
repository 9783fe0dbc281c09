"""The plan's action graph in Graphviz DOT, for ``nebctl diff --graph dot`` (``| dot -Tsvg > plan.svg``).

One cluster per changed resource, coloured by its change (green create, yellow update, red delete, purple
replace), one node per driver action labelled with its operation and host, one edge per dependency. Nodes and
clusters follow the plan's order of actions and edges are sorted by it, so the same plan always gives the same
text and the output can be diffed. Every id is quoted and escaped. Action parameters are left out: they are for drivers,
not for a picture. Pure function.
"""

from __future__ import annotations

from collections.abc import Sequence

from nebctl.core.plans import Action, ChangeType, Plan
from nebctl.rendering.values import VERBS, address

_COLOURS = {
    ChangeType.CREATE: "darkgreen",
    ChangeType.UPDATE: "darkgoldenrod",
    ChangeType.REPLACE: "purple",
    ChangeType.DELETE: "red3",
    ChangeType.NOOP: "gray50",
}


def dot_id(text: str) -> str:
    """``text`` as a quoted DOT id; newlines become DOT's centred line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_dot(plan: Plan) -> str:
    """The action graph as a DOT ``digraph``, ending with a newline."""
    lines = [
        f"digraph {dot_id('plan ' + plan.stack)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style=rounded, fontname="monospace", fontsize=10];',
        "  edge [arrowsize=0.7];",
    ]
    by_resource: dict[str, list[Action]] = {}
    for action in plan.actions:
        by_resource.setdefault(address(action.key), []).append(action)
    changes = {address(change.key): change for change in plan.changes}
    for index, (resource, actions) in enumerate(by_resource.items()):
        change = changes.get(resource)
        kind = change.type if change is not None else ChangeType.NOOP
        title = f"{resource} {VERBS[kind]}" + (" (restart)" if change is not None and change.restart else "")
        colour = _COLOURS[kind]
        lines.append(f"  subgraph {dot_id(f'cluster_{index}')} {{")
        lines.append(f"    label={dot_id(title)}; color={colour}; fontcolor={colour};")
        lines += [f"    {dot_id(action.id)} [label={dot_id(_label(action))}];" for action in actions]
        lines.append("  }")
    lines += _edges(plan.edges, [action.id for action in plan.actions])
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(action: Action) -> str:
    return f"{action.operation}\n{action.host}" if action.host else action.operation


def _edges(edges: Sequence[tuple[str, str]], order: Sequence[str]) -> list[str]:
    # Edges are sorted by the positions of their ends among the actions: the planner's edge list can come out in
    # a different order from one process to the next (it is built from sets), and the graph must not.
    position = {identifier: index for index, identifier in enumerate(order)}
    unknown = len(position)
    ordered = sorted(edges, key=lambda edge: (position.get(edge[0], unknown), position.get(edge[1], unknown), edge))
    return [f"  {dot_id(before)} -> {dot_id(after)};" for before, after in ordered]
