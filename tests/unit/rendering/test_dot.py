"""render_dot: a well-formed digraph with every action and dependency, quoted ids, and a stable order."""

from __future__ import annotations

import random
import re
from dataclasses import replace

import pytest

from nebctl.core.families import Family
from nebctl.core.keys import Kind
from nebctl.core.plans import Action, ChangeType, Plan, ResourceChange
from nebctl.rendering import render_dot
from nebctl.rendering.graph import dot_id
from tests.unit.rendering.plans import key, spec_example
from tests.unit.rendering.scenarios import SCENARIOS
from tests.unit.rendering.test_golden import plan_of

NODE = re.compile(r'^    ("(?:[^"\\]|\\.)*") \[label=', re.MULTILINE)
EDGE = re.compile(r'^  ("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*");$', re.MULTILINE)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_action_and_edge_appears_once(scenario: str) -> None:
    plan = plan_of(scenario)
    text = render_dot(plan)
    assert text.startswith('digraph "plan examples" {\n') and text.endswith("}\n")
    assert NODE.findall(text) == [dot_id(action.id) for action in plan.actions]
    assert sorted(EDGE.findall(text)) == sorted((dot_id(a), dot_id(b)) for a, b in plan.edges)
    assert text.count("{") == text.count("}")


def test_edge_order_does_not_depend_on_the_planners_edge_order() -> None:
    plan = plan_of("create-everything")
    edges = list(plan.edges)
    random.Random(7).shuffle(edges)
    assert render_dot(replace(plan, edges=tuple(edges))) == render_dot(plan)


def test_ids_are_quoted_and_escaped() -> None:
    assert dot_id('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    vm = key(Kind.VIRTUAL_MACHINE, "web-1")
    action = Action('vm/web-1:odd"id', vm, Family.VIRTUALIZATION, "deploy", None)
    plan = Plan("s", (ResourceChange(vm, ChangeType.CREATE),), (action,), (), "f")
    assert '    "vm/web-1:odd\\"id" [label="deploy"];' in render_dot(plan)


def test_clusters_per_resource_coloured_by_change() -> None:
    text = render_dot(spec_example())
    assert 'subgraph "cluster_0" {\n    label="network/lan will be created"; color=darkgreen;' in text
    assert 'label="vm/web-1 will be updated in-place (restart)"; color=darkgoldenrod;' in text
    assert '"vm/web-1:start" [label="start\\nkvm-a1"];' in text
