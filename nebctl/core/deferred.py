"""Values that a pickle reads back only when first asked for: ``Deferred``, ``DeferredPart`` and ``DeferredChunks``.

Something kept between processes may hold large parts that most readers never look at: a kept plan trace's
resolved specs and observed states are read only for the resources planned again, after an edit of a few. A
``Deferred`` value is written as a pickle of its own inside the outer one, so reading the outer pickle back copies
its bytes and builds none of its objects; ``get`` builds them, once. Pickling it again writes the same bytes, and
in memory (never pickled) it is simply the value. What is pickled together stays together: parts that share
objects (a spec and the observed state that is the same dict) go into one ``Deferred`` and are read through
``DeferredPart``, so that the pickle still writes each shared object once. A mapping read a few values at a time
(a kept observation's VMs, of which a plan reads those it plans again) is kept in chunks (``DeferredChunks``), each
built when one of its values is read.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from typing import Any, Generic, TypeVar

Value = TypeVar("Value")
Key = TypeVar("Key")
Item = TypeVar("Item")

_UNREAD: Any = object()


class Deferred(Generic[Value]):
    """A value that, once read back from a pickle, stays pickled until ``get``. Reading it from two threads at
    once may build it twice, which is harmless: both get equal values, and one is kept."""

    __slots__ = ("_pickled", "_stored", "_value")

    def __init__(self, value: Value) -> None:
        self._value: Value = value
        self._pickled: bytes | None = None
        self._stored = False

    @classmethod
    def _read_back(cls, pickled: bytes) -> Deferred[Any]:
        deferred: Deferred[Any] = cls.__new__(cls)
        deferred._pickled = pickled
        deferred._value = _UNREAD
        deferred._stored = True
        return deferred

    def get(self) -> Value:
        """The value: built from its pickle the first time."""
        if self._value is _UNREAD:
            assert self._pickled is not None
            self._value = pickle.loads(self._pickled)
        return self._value

    @property
    def read(self) -> bool:
        """Whether the value has been built (or never was pickled)."""
        return self._value is not _UNREAD

    @property
    def stored(self) -> bool:
        """Whether the value was read back from a pickle (rather than made in this process)."""
        return self._stored

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        pickled = self._pickled
        if pickled is None:
            pickled = self._pickled = pickle.dumps(self._value, protocol=pickle.HIGHEST_PROTOCOL)
        return (Deferred._read_back, (pickled,))


class DeferredPart(Mapping[Key, Item]):
    """The mapping at ``index`` of a deferred tuple of mappings, built (the whole tuple) when first read."""

    __slots__ = ("_index", "_whole")

    def __init__(self, whole: Deferred[tuple[Mapping[Any, Any], ...]], index: int) -> None:
        self._whole = whole
        self._index = index

    def _mapping(self) -> Mapping[Key, Item]:
        return self._whole.get()[self._index]

    def __getitem__(self, key: Key) -> Item:
        return self._mapping()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._mapping()

    def __iter__(self) -> Iterator[Key]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    @property
    def read(self) -> bool:
        """Whether the mappings have been built."""
        return self._whole.read


class DeferredChunks(Mapping[Key, Item]):
    """A mapping kept in chunks, each a ``Deferred`` of its own: reading a value builds its chunk only. ``chunk_of``
    names each key's chunk (a VM's host, say), so that what is read together is built together; the keys and their
    chunks' names are built with the mapping."""

    __slots__ = ("_chunks", "_index")

    def __init__(self, values: Mapping[Key, Item], chunk_of: Callable[[Key], Hashable]) -> None:
        chunks: dict[Hashable, dict[Key, Item]] = {}
        index: dict[Key, Hashable] = {}
        for key, value in values.items():
            name = index[key] = chunk_of(key)
            chunks.setdefault(name, {})[key] = value
        self._index = index
        self._chunks = {name: Deferred(chunk) for name, chunk in chunks.items()}

    def replaced(
        self, dropped: Collection[Hashable], values: Mapping[Key, Item], chunk_of: Callable[[Key], Hashable]
    ) -> DeferredChunks[Key, Item]:
        """This mapping without the chunks named in ``dropped``, with ``values`` in chunks of their own (named by
        ``chunk_of``; a chunk of that name here is dropped too, and a key in both is ``values``'). The other chunks
        are shared as they are: one never read is not built, and pickling the result writes the bytes it was read
        back from (a kept observation with a few hosts probed again is written again without building or pickling
        the others)."""
        fresh = DeferredChunks(values, chunk_of)
        gone = {*dropped, *fresh._chunks}
        merged: DeferredChunks[Key, Item] = DeferredChunks.__new__(DeferredChunks)
        merged._index = {key: name for key, name in self._index.items() if name not in gone}
        merged._index.update(fresh._index)
        merged._chunks = {name: chunk for name, chunk in self._chunks.items() if name not in gone}
        merged._chunks.update(fresh._chunks)
        return merged

    def changed(self, change: Callable[[Item], Item]) -> DeferredChunks[Key, Item]:
        """This mapping with ``change`` made to each value of the chunks made in this process; those read back from a
        pickle are shared as they are. For a change that what was pickled had undergone already (a part left out
        of what is written), so that writing the mapping again spares building and pickling what was read back."""
        changed: DeferredChunks[Key, Item] = DeferredChunks.__new__(DeferredChunks)
        changed._index = self._index
        changed._chunks = {
            name: chunk if chunk.stored else Deferred({key: change(value) for key, value in chunk.get().items()})
            for name, chunk in self._chunks.items()
        }
        return changed

    def chunk(self, name: Hashable) -> dict[Key, Item]:
        """The values of chunk ``name`` (built if it was not), none when there is no such chunk."""
        found = self._chunks.get(name)
        if found is None:
            return {}
        index = self._index
        # A chunk shared by ``replaced`` may hold keys that now belong to another chunk: those are not its.
        return {key: value for key, value in found.get().items() if index.get(key) == name}

    def __getitem__(self, key: Key) -> Item:
        return self._chunks[self._index[key]].get()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[Key]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def chunks_read(self) -> int:
        """How many chunks have been built."""
        return sum(1 for chunk in self._chunks.values() if chunk.read)
