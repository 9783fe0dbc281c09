"""render_text: the SPEC's plan example, colour only on request, values, secrets, placement, collapse, speed."""

from __future__ import annotations

import re
import time

import pytest

from nebctl.core.fields import Effect
from nebctl.core.keys import Kind
from nebctl.core.plans import ChangeType, DriftItem, Plan, ResourceChange
from nebctl.rendering import render_text
from tests.unit.rendering.plans import SPEC_TEXT, GiB, field, key, many_vms, spec_example
from tests.unit.rendering.scenarios import SCENARIOS
from tests.unit.rendering.test_golden import plan_of

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one(change: ResourceChange, **plan: object) -> str:
    return render_text(Plan("s", (change,), (), (), "f", **plan), color=False)  # type: ignore[arg-type]


def test_the_spec_example_renders_exactly_as_the_spec_shows() -> None:
    assert render_text(spec_example(), color=False) == SPEC_TEXT


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_escape_code_without_colour_and_the_same_text_with_it(scenario: str) -> None:
    plain = render_text(plan_of(scenario), color=False)
    coloured = render_text(plan_of(scenario), color=True)
    assert "\x1b" not in plain
    assert ANSI.search(coloured)
    assert ANSI.sub("", coloured) == plain


def test_colours_follow_the_change() -> None:
    text = render_text(spec_example(), color=True)
    assert "\x1b[32m+\x1b[0m network" in text
    assert "\x1b[33m~\x1b[0m vm" in text
    assert "\x1b[31m-\x1b[0m/\x1b[32m+\x1b[0m vm" in text
    assert "\x1b[31m# forces replacement\x1b[0m" in text


def test_no_changes() -> None:
    text = render_text(Plan("s", (), (), (), "f"), color=False)
    assert text == "No changes. Your infrastructure matches the configuration.\n"


def test_byte_counts_print_as_quantities_and_ratios_do_not() -> None:
    host = key(Kind.HOST, "kvm-a1")
    text = one(
        ResourceChange(
            host,
            ChangeType.UPDATE,
            (
                field("reserved.memory", GiB, 2 * GiB),
                field("overcommit.memory", 1.0, 1.5),
                field("disks[3].size", 20 * GiB, 40 * GiB + 512 * 1024**2),
                field("size", 1000, 1001),
            ),
        )
    )
    assert '~ reserved.memory   = "1Gi" -> "2Gi"' in text
    assert "~ overcommit.memory = 1 -> 1.5" in text
    assert '~ disks[3].size     = "20Gi" -> "41472Mi"' in text
    assert '~ size              = "1000" -> "1001"' in text


def test_values_are_escaped_so_that_no_value_can_forge_a_plan_line() -> None:
    vm = key(Kind.VIRTUAL_MACHINE, "web-1")
    hostile = 'x"\n  # vm/web-9 will be destroyed'
    text = one(ResourceChange(vm, ChangeType.UPDATE, (field("labels.note", "ok", hostile),)))
    assert '~ labels.note = "ok" -> "x\\"\\n  # vm/web-9 will be destroyed"' in text
    assert "\n  # vm/web-9" not in text


def test_added_and_removed_fields_within_an_update() -> None:
    vm = key(Kind.VIRTUAL_MACHINE, "web-1")
    text = one(
        ResourceChange(
            vm,
            ChangeType.UPDATE,
            (field("labels.new", None, "yes"), field("labels.old", "no", None), field("dns", [], ["10.0.0.1"])),
        )
    )
    assert '+ labels.new = "yes"' in text
    assert '- labels.old = "no" -> null' in text
    assert '~ dns        = [] -> ["10.0.0.1"]' in text


@pytest.mark.parametrize(
    ("change_type", "before", "after", "expected"),
    [
        (ChangeType.CREATE, None, "s3cr3t", "+ cloudInit.userData = (sensitive)"),
        (ChangeType.UPDATE, "0ld", "s3cr3t", "~ cloudInit.userData = (sensitive)"),
        (ChangeType.UPDATE, "0ld", None, "- cloudInit.userData = (sensitive) -> null"),
        (ChangeType.REPLACE, "0ld", "s3cr3t", "~ cloudInit.userData = (sensitive) # forces replacement"),
    ],
)
def test_sensitive_values_never_print(change_type: ChangeType, before: str, after: str, expected: str) -> None:
    vm = key(Kind.VIRTUAL_MACHINE, "web-1")
    change = ResourceChange(
        vm, change_type, (field("cloudInit.userData", before, after, Effect.REPLACE, sensitive=True),)
    )
    text = one(change)
    assert expected in text
    assert "s3cr3t" not in text and "0ld" not in text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (ResourceChange(key(Kind.VIRTUAL_MACHINE, "a"), ChangeType.CREATE, host="h1"), "# placed on host h1"),
        (ResourceChange(key(Kind.VIRTUAL_MACHINE, "a"), ChangeType.DELETE, host="h1"), "# on host h1"),
        (
            ResourceChange(key(Kind.VIRTUAL_MACHINE, "a"), ChangeType.UPDATE, host="h2", previous_host="h1"),
            "# moves from h1 to h2",
        ),
        (
            ResourceChange(key(Kind.VIRTUAL_MACHINE, "a"), ChangeType.REPLACE, host="h1", previous_host="h1"),
            "# placed on host h1",
        ),
    ],
)
def test_host_placement(change: ResourceChange, expected: str) -> None:
    assert f"\n        {expected}\n" in one(change)


def test_reasons_and_uncorrected_drift_and_warnings() -> None:
    vm = key(Kind.VIRTUAL_MACHINE, "web-1")
    change = ResourceChange(vm, ChangeType.CREATE, reason="resuming an interrupted create")
    drift = DriftItem(key(Kind.VIRTUAL_MACHINE, "db-1"), "host kvm-a1 is not answering", None)
    text = one(change, drift=(drift,), warnings=("vm/old is kept",))
    assert "  # vm/web-1 will be created (resuming an interrupted create)\n" in text
    assert "Changed outside nebctl:\n  # vm/db-1: host kvm-a1 is not answering; nebctl leaves it alone\n" in text
    assert "Warnings:\n  - vm/old is kept\n" in text
    assert text.endswith("Plan: 1 to add, 0 to change, 0 to destroy.\n")


def test_namespaced_resources_name_their_namespace() -> None:
    text = one(ResourceChange(key(Kind.VIRTUAL_MACHINE, "web-1", "team-a"), ChangeType.DELETE))
    assert '  # team-a/vm/web-1 will be destroyed\n  - vm "team-a/web-1" {\n    }\n' in text


def test_unchanged_count_is_singular_for_one() -> None:
    vm = key(Kind.VIRTUAL_MACHINE, "web-1")
    assert "# (1 unchanged attribute hidden)" in one(
        ResourceChange(vm, ChangeType.UPDATE, (field("state", "a", "b"),), unchanged=1)
    )


def test_collapse_shows_the_first_creates_of_each_kind_and_counts_the_rest() -> None:
    plan = many_vms(30, fields_per_vm=3)
    text = render_text(plan, color=False, collapse_after=5)
    assert text.count("will be created") == 5
    assert "  # ... and 25 more vm to be created, not shown\n" in text
    assert text.endswith("Plan: 30 to add, 0 to change, 0 to destroy.\n")
    assert render_text(plan, color=False).count("will be created") == 30


def test_a_big_plan_renders_quickly() -> None:
    # 5,000 resources with 20 fields each, about 110,000 lines, timed in CPU seconds so that a busy machine does
    # not fail it. The budget is generous: 20,000 such resources took about 0.5 s of CPU when this was written,
    # which puts a 100,000-resource plan at a few seconds.
    plan = many_vms(5_000)
    started = time.process_time()
    text = render_text(plan, color=False)
    elapsed = time.process_time() - started
    assert text.count("\n") > 100_000
    assert elapsed < 2.0
