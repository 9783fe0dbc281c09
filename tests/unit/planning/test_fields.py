"""Field comparison: ``compare`` and ``added`` on random spec documents (plain JSON data)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nebctl.core.fields import Effect, FieldRule, added, compare, flatten

NAMES = st.sampled_from(["disks", "nics", "size", "image", "ip", "labels", "cloudInit", "userData", "a", "b"])
LEAVES = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["x", "y", ""])
SPECS = st.dictionaries(
    NAMES,
    st.recursive(
        LEAVES,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
        max_leaves=12,
    ),
    max_size=5,
)
RULES = [
    FieldRule("disks", Effect.RESTART),
    FieldRule("disks[*].image", Effect.REPLACE),
    FieldRule("labels", Effect.NONE),
    FieldRule("a", Effect.IN_PLACE),
]


@settings(max_examples=300, deadline=None)
@given(spec=SPECS)
def test_added_lists_what_compare_lists_from_nothing(spec: dict[str, Any]) -> None:
    sensitive = ["cloudInit", "b"]
    expected = compare(None, spec, rules=[], default=FieldRule("", Effect.NONE), sensitive=sensitive)
    assert added(spec, sensitive=sensitive) == expected


@settings(max_examples=300, deadline=None)
@given(before=SPECS, after=SPECS)
def test_compare_lists_every_real_difference_once(before: dict[str, Any], after: dict[str, Any]) -> None:
    changes = compare(before, after, rules=RULES, default=FieldRule("", Effect.REPLACE))
    paths = [change.path for change in changes]
    assert len(paths) == len(set(paths))
    assert all(change.before != change.after for change in changes)
    if before == after:
        assert changes == []
    # Whatever differs in a leaf that both sides have is listed.
    old, new = flatten(before), flatten(after)
    for path in old.keys() & new.keys():
        if old[path] != new[path] and not (old[path] in ([], {}) or new[path] in ([], {})):
            assert path in paths


def test_new_disk_costs_the_rule_of_disks_not_of_its_fields() -> None:
    before = {"disks": [{"image": "a", "size": 1}]}
    after = {"disks": [{"image": "a", "size": 1}, {"image": "b", "size": 2}]}
    changes = compare(before, after, rules=RULES, default=FieldRule("", Effect.REPLACE))
    assert [(c.path, c.effect) for c in changes] == [
        ("disks[1].image", Effect.RESTART),
        ("disks[1].size", Effect.RESTART),
    ]


def test_changed_image_of_an_existing_disk_replaces() -> None:
    changes = compare(
        {"disks": [{"image": "a"}]}, {"disks": [{"image": "b"}]}, rules=RULES, default=FieldRule("", Effect.NONE)
    )
    assert [(c.path, c.effect) for c in changes] == [("disks[0].image", Effect.REPLACE)]


def test_list_indices_sort_numerically() -> None:
    after = {"nics": [{"ip": str(i)} for i in range(12)]}
    assert [c.path for c in added(after)][:3] == ["nics[0].ip", "nics[1].ip", "nics[2].ip"]
    assert [c.path for c in added(after)][-1] == "nics[11].ip"
