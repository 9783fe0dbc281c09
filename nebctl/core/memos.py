"""Values computed of immutable objects, found again by the objects' identity: ``IdentityMemo``.

A long-lived process loads the same manifest set again and again, and the documents of its unchanged files are the
very objects it had (the manifest cache keeps them). What was computed of such an object (its digest, its
references) holds as long as the object: looking it up by ``id`` costs nothing, where recomputing it means dumping
the document. Each entry holds its object, so that the identity cannot pass to another object while the entry
lives, and a lookup checks that it is the same object. A generation is replaced whole (``replace``), so a
reader in another thread sees one or the other, never half of each; ``add`` puts entries into the current one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

Held = TypeVar("Held")
Value = TypeVar("Value")


class IdentityMemo(Generic[Held, Value]):
    """One generation of values, each of one object, looked up by the object's identity."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Held, Value]] = {}

    def get(self, held: Held) -> Value | None:
        """The value kept for this very object, or None."""
        entry = self._entries.get(id(held))
        return entry[1] if entry is not None and entry[0] is held else None

    def replace(self, pairs: Iterable[tuple[Held, Value]]) -> None:
        """Keep exactly these (object, value) pairs: the generation before is dropped."""
        self._entries = {id(held): (held, value) for held, value in pairs}

    def add(self, pairs: Iterable[tuple[Held, Value]]) -> None:
        """Keep these pairs beside the ones kept, in the same generation: a reader in another thread may find some
        of them before the others (each is whole), which for a memo only means computing a value once more. Adding
        in place keeps a set added file by file from being copied once per file."""
        self._entries.update((id(held), (held, value)) for held, value in pairs)
