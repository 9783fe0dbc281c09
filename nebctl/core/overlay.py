"""A mapping to write in over another that it never writes: ``Overlay``.

A plan made from a kept trace starts from the trace's resolved specs, which are built from their pickle only when
read (``core.deferred``), and replaces those of the few resources it plans again; the apply's world starts from the
stack's records as planned, which may be decoded only when read (``database.record_rows``), and the journal's
writes go on top. Copying the base into a dict would read all of it; an overlay reads the base only for the keys
asked of it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, MutableMapping
from typing import TypeVar

Key = TypeVar("Key")
Item = TypeVar("Item")


class Overlay(MutableMapping[Key, Item]):
    """``base`` without the keys of ``hidden``, to write in: what is written (or deleted) stays here, and ``base``
    is read only for what is asked of it. Laid over another overlay, it takes that one's base, so overlays never
    pile up."""

    def __init__(self, base: Mapping[Key, Item], hidden: Collection[Key] = ()) -> None:
        if isinstance(base, Overlay):
            self._base: Mapping[Key, Item] = base._base
            self._own: dict[Key, Item] = {key: value for key, value in base._own.items() if key not in hidden}
            self._hidden: set[Key] = base._hidden | set(hidden)
        else:
            self._base, self._own, self._hidden = base, {}, set(hidden)

    def __getitem__(self, key: Key) -> Item:
        if key in self._own:
            return self._own[key]
        if key in self._hidden:
            raise KeyError(key)
        return self._base[key]

    def __contains__(self, key: object) -> bool:
        return key in self._own or (key not in self._hidden and key in self._base)

    def __setitem__(self, key: Key, value: Item) -> None:
        self._own[key] = value

    def __delitem__(self, key: Key) -> None:
        if key not in self:
            raise KeyError(key)
        self._own.pop(key, None)
        self._hidden.add(key)

    def __iter__(self) -> Iterator[Key]:
        own, hidden = self._own, self._hidden
        yield from (key for key in self._base if key not in own and key not in hidden)
        yield from own

    def __len__(self) -> int:
        return sum(1 for _ in self)
