"""Golden files for the three plan renderers, one set per representative plan (see ``scenarios``).

Each scenario has four files under ``tests/golden/plans/``: ``NAME.txt`` (text without colour),
``NAME.color.txt`` (with ANSI colour), ``NAME.json`` (``render_json``, indented) and ``NAME.dot``.

After an intended change to a renderer, the planner or the example manifests, regenerate them and review the
diff before committing:

    pytest tests/unit/rendering --update-golden
    NEBCTL_UPDATE_GOLDEN=1 pytest tests/unit/rendering      # the same, for runners that cannot pass options
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import pytest

from nebctl.core.plans import Plan
from nebctl.rendering import render_dot, render_json, render_text
from tests.unit.rendering.scenarios import SCENARIOS


@functools.cache
def plan_of(name: str) -> Plan:
    return SCENARIOS[name]()


RENDERERS: dict[str, Callable[[Plan], str]] = {
    "txt": lambda plan: render_text(plan, color=False),
    "color.txt": lambda plan: render_text(plan, color=True),
    "json": lambda plan: json.dumps(render_json(plan), indent=2) + "\n",
    "dot": render_dot,
}


@pytest.mark.parametrize("suffix", list(RENDERERS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_output_matches_golden_file(scenario: str, suffix: str, golden: Callable[[str, str], None]) -> None:
    golden(f"{scenario}.{suffix}", RENDERERS[suffix](plan_of(scenario)))
