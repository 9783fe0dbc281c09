"""No renderer ever shows a secret: the plans below carry secrets in their field changes, the outputs must not."""

from __future__ import annotations

import json

import pytest

from nebctl.rendering import render_dot, render_json, render_text
from tests.unit.rendering.scenarios import SECRETS
from tests.unit.rendering.test_golden import plan_of

SECRET_SCENARIOS = ["secret-change", "secret-create"]


@pytest.mark.parametrize("scenario", SECRET_SCENARIOS)
def test_the_plan_itself_carries_the_secrets(scenario: str) -> None:
    # Otherwise the test below would prove nothing.
    values = [str(field.before) + str(field.after) for change in plan_of(scenario).changes for field in change.fields]
    assert any(secret in value for secret in SECRETS for value in values)


@pytest.mark.parametrize("scenario", SECRET_SCENARIOS)
def test_no_output_contains_a_secret(scenario: str) -> None:
    plan = plan_of(scenario)
    outputs = {
        "text": render_text(plan, color=False),
        "color": render_text(plan, color=True),
        "collapsed": render_text(plan, color=False, collapse_after=1),
        "json": json.dumps(render_json(plan)),
        "dot": render_dot(plan),
    }
    for name, output in outputs.items():
        for secret in SECRETS:
            assert secret not in output, f"{name} shows a secret"
        assert "password:" not in output, f"{name} shows cloud-init data"
    assert "(sensitive)" in outputs["text"]
