"""``core.deferred``: a value pickled inside another is built only when asked for, and is the value it was."""

from __future__ import annotations

import pickle
from collections.abc import Mapping

from nebctl.core.deferred import Deferred, DeferredChunks, DeferredPart


class _Counted:
    """Counts how many times a pickle builds one (``__setstate__`` runs once per object built)."""

    built = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def __setstate__(self, state: dict[str, str]) -> None:
        _Counted.built += 1
        self.__dict__.update(state)


def test_a_deferred_value_is_built_only_when_asked_for_and_once() -> None:
    _Counted.built = 0
    outer = {"small": 1, "large": Deferred([_Counted("a"), _Counted("b")])}
    back = pickle.loads(pickle.dumps(outer))
    assert _Counted.built == 0  # reading the outer pickle built nothing inside the deferred value
    assert not back["large"].read
    assert [item.name for item in back["large"].get()] == ["a", "b"]
    assert _Counted.built == 2 and back["large"].read
    back["large"].get()
    assert _Counted.built == 2  # built once


def test_a_deferred_value_in_memory_is_the_value_and_pickles_again_as_it_was() -> None:
    value = {"x": [1, 2]}
    deferred = Deferred(value)
    assert deferred.get() is value and deferred.read
    once = pickle.dumps(deferred)
    back = pickle.loads(once)
    assert pickle.dumps(back) == once  # written again without being built
    assert not back.read
    assert back.get() == value


def test_parts_of_one_deferred_tuple_share_what_they_shared() -> None:
    shared = {"cpu": 2}
    whole: Deferred[tuple[Mapping[str, object], ...]] = Deferred(({"vm": shared}, {"vm": shared, "other": 3}))
    back = pickle.loads(pickle.dumps((DeferredPart(whole, 0), DeferredPart(whole, 1))))
    first, second = back
    assert not first.read and not second.read
    assert dict(second) == {"vm": {"cpu": 2}, "other": 3}
    assert first.read  # one tuple, built once for both
    assert first["vm"] is second["vm"]
    assert "other" in second and "other" not in first and len(first) == 1


def test_chunks_are_built_one_at_a_time_as_their_values_are_read() -> None:
    _Counted.built = 0
    values = {f"vm{n}": _Counted(f"vm{n}") for n in range(6)}
    chunked = DeferredChunks(values, lambda key: int(key[2:]) % 3)  # three chunks of two
    back = pickle.loads(pickle.dumps(chunked))
    assert _Counted.built == 0 and back.chunks_read == 0
    assert list(back) == list(values) and len(back) == 6 and "vm4" in back and "vm9" not in back
    assert back["vm4"].name == "vm4"
    assert back.chunks_read == 1 and _Counted.built == 2  # vm4's chunk: vm1 and vm4
    assert back["vm1"].name == "vm1" and back.chunks_read == 1
    assert back.get("vm9") is None
    assert {key: value.name for key, value in back.items()} == {key: key for key in values}
    assert back.chunks_read == 3 and _Counted.built == 6


def test_chunks_replaced_share_the_others_unread_and_pickle_them_as_read() -> None:
    _Counted.built = 0
    values = {f"vm{n}": _Counted(f"vm{n}") for n in range(6)}
    back = pickle.loads(pickle.dumps(DeferredChunks(values, lambda key: f"h{int(key[2:]) % 3}")))
    fresh = {"vm2": _Counted("vm2 again"), "vm7": _Counted("vm7")}
    merged = back.replaced({"h2"}, fresh, lambda key: "h2")  # h2 held vm2 and vm5: vm5 is gone
    assert _Counted.built == 0 and merged.chunks_read == 1  # the new chunk only, made here
    assert sorted(merged) == ["vm0", "vm1", "vm2", "vm3", "vm4", "vm7"]
    assert merged["vm2"].name == "vm2 again" and "vm5" not in merged
    stripped = merged.changed(lambda value: _Counted(value.name.upper()))
    assert stripped["vm7"].name == "VM7" and stripped["vm2"].name == "VM2 AGAIN"  # made here: changed
    again = pickle.loads(pickle.dumps(stripped))
    assert _Counted.built == 0  # h0's and h1's chunks were written as they were read back, never built
    assert {key: value.name for key, value in again.items()} == {
        "vm0": "vm0", "vm1": "vm1", "vm2": "VM2 AGAIN", "vm3": "vm3", "vm4": "vm4", "vm7": "VM7"
    }  # fmt: skip
    assert _Counted.built == 6


def test_a_chunk_is_built_alone_and_holds_only_its_own_keys() -> None:
    _Counted.built = 0
    values = {f"vm{n}": _Counted(f"vm{n}") for n in range(6)}
    back = pickle.loads(pickle.dumps(DeferredChunks(values, lambda key: f"h{int(key[2:]) % 3}")))
    assert {key: value.name for key, value in back.chunk("h1").items()} == {"vm1": "vm1", "vm4": "vm4"}
    assert back.chunks_read == 1 and _Counted.built == 2
    assert back.chunk("h9") == {}
    # vm1 moves to h2, which is made again: h1's chunk, shared, still holds it, but it is no longer h1's.
    merged = back.replaced({"h2"}, {"vm1": _Counted("vm1 on h2"), "vm2": _Counted("vm2")}, lambda key: "h2")
    assert list(merged.chunk("h1")) == ["vm4"]
    assert {key: value.name for key, value in merged.chunk("h2").items()} == {"vm1": "vm1 on h2", "vm2": "vm2"}
    assert merged.chunk("h0").keys() == {"vm0", "vm3"}
