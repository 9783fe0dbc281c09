"""``core.overlay.Overlay`` and ``incremental.without``: a mapping to write in over a base without some keys
behaves as a copy of the base with those keys popped, and reads the base only for what is asked of it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from hypothesis import given
from hypothesis import strategies as st

from nebctl.controller.planning.incremental import without
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.overlay import Overlay

KEYS = [ResourceKey.of(Kind.VIRTUAL_MACHINE, f"vm{n}") for n in range(8)]
keys = st.sampled_from(KEYS)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, st.integers()),
        st.tuples(st.just("del"), keys, st.none()),
        st.tuples(st.just("hide"), st.frozensets(keys), st.none()),
    ),
    max_size=12,
)


class _Asked(Mapping[ResourceKey, int]):
    """A base that says which keys were read."""

    def __init__(self, values: dict[ResourceKey, int]) -> None:
        self.held = values
        self.asked: list[ResourceKey] = []

    def __getitem__(self, key: ResourceKey) -> int:
        self.asked.append(key)
        return self.held[key]

    def __iter__(self) -> Iterator[ResourceKey]:
        return iter(self.held)

    def __len__(self) -> int:
        return len(self.held)


@given(st.dictionaries(keys, st.integers()), st.frozensets(keys), operations)
def test_an_overlay_is_a_copy_with_the_keys_popped(
    base: dict[ResourceKey, int], hidden: frozenset[ResourceKey], steps: list[tuple[str, object, object]]
) -> None:
    model = {key: value for key, value in base.items() if key not in hidden}
    overlay: Overlay[ResourceKey, int] = Overlay(_Asked(base), hidden)
    for step, argument, value in steps:
        if step == "set":
            assert isinstance(argument, ResourceKey) and isinstance(value, int)
            model[argument] = value
            overlay[argument] = value
        elif step == "del":
            assert isinstance(argument, ResourceKey)
            if argument in model:
                del model[argument]
                del overlay[argument]
        else:  # an overlay laid over this one, as a plan made from a plan's trace would
            assert isinstance(argument, frozenset)
            for key in argument:
                model.pop(key, None)
            overlay = Overlay(overlay, argument)
        assert dict(overlay) == model
        assert len(overlay) == len(model)
        assert all((key in overlay) == (key in model) for key in KEYS)


def test_an_overlay_reads_the_base_only_for_the_keys_asked() -> None:
    base = _Asked({key: n for n, key in enumerate(KEYS)})
    overlay = Overlay(base, {KEYS[0]})
    overlay[KEYS[1]] = 100
    assert overlay.get(KEYS[0]) is None and overlay[KEYS[1]] == 100 and overlay[KEYS[2]] == 2
    assert base.asked == [KEYS[2]]


def test_without_copies_a_dict_and_lays_an_overlay_over_anything_else() -> None:
    values = {key: n for n, key in enumerate(KEYS)}
    copied = without(values, KEYS[:2])
    assert type(copied) is dict and copied == {key: n for n, key in enumerate(KEYS) if n >= 2}
    assert values[KEYS[0]] == 0  # the dict given is left as it was
    laid = without(_Asked(values), KEYS[:2])
    assert isinstance(laid, Overlay) and dict(laid) == copied
