"""``core.memos.IdentityMemo``: a value is found again for the very object it was kept for, never for an equal one,
and only in the generation it was kept in; an entry holds its object, so its identity cannot pass to another."""

from __future__ import annotations

import gc
import weakref

from nebctl.core.memos import IdentityMemo


class Document:
    """An immutable stand-in for a manifest: two of them can be equal and still be two objects."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Document) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def test_a_value_is_found_for_the_same_object_only() -> None:
    memo: IdentityMemo[Document, str] = IdentityMemo()
    web = Document("web")
    memo.replace([(web, "digest of web")])
    assert memo.get(web) == "digest of web"
    assert memo.get(Document("web")) is None  # equal, but not the object it was computed of


def test_replace_drops_the_generation_before_and_add_keeps_it() -> None:
    memo: IdentityMemo[Document, int] = IdentityMemo()
    a, b, c = Document("a"), Document("b"), Document("c")
    memo.replace([(a, 1)])
    memo.add([(b, 2)])
    assert (memo.get(a), memo.get(b), memo.get(c)) == (1, 2, None)
    memo.replace([(c, 3)])
    assert (memo.get(a), memo.get(b), memo.get(c)) == (None, None, 3)


def test_an_entry_keeps_its_object_alive_so_its_identity_is_never_reused() -> None:
    memo: IdentityMemo[Document, int] = IdentityMemo()
    document = Document("db")
    alive = weakref.ref(document)
    memo.replace([(document, 7)])
    del document
    gc.collect()
    assert alive() is not None
    memo.replace([])
    gc.collect()
    assert alive() is None
