"""The digest of a manifest as applied (its spec with secrets in clear, its labels and annotations): what a plan's
fingerprint is made of, one per document.

Computing one means dumping the document and encoding it as canonical JSON, about 20 µs; a plan's fingerprint needs
every document's, 0.2 s at 10,000 VMs. The manifest cache (``schemas.caching``) keeps each document's digest with
the document, and hands the digests of the set it loaded last to ``remember`` (and ``remember_more``, as it reads
the documents of a file back): ``document_digest`` then returns the kept digest of exactly those document objects
(documents are immutable), and computes it for any other. A set read from the manifest cache also tells each
document's digest by key (``DigestsByKey``), without reading the document back. Either way the digest is the same;
only its cost differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from nebctl.core.keys import ResourceKey
from nebctl.core.memos import IdentityMemo
from nebctl.schemas.models import AnyManifest, spec_document

# One encoder for every value: ``json.dumps`` with these options builds a new one per call, which a plan of
# 100,000 resources would pay hundreds of thousands of times. The output is the same.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)

# The digests of the documents of the last set loaded through the manifest cache.
_REMEMBERED: IdentityMemo[AnyManifest, bytes] = IdentityMemo()


@runtime_checkable
class DigestsByKey(Protocol):
    """Documents that tell each one's digest (``computed_digest``'s) without reading it
    (``schemas.caching.CachedDocuments``, from each file's entry)."""

    def digest(self, key: ResourceKey) -> bytes: ...


def with_metadata(spec: dict[str, Any], document: AnyManifest) -> dict[str, Any]:
    """``spec`` plus the document's labels and annotations under ``metadata``: the document that is compared
    with, and recorded as, what was applied. Left out when both are empty, so that records written before
    metadata was recorded (and resources without labels) compare equal."""
    metadata = document.metadata
    if metadata.labels or metadata.annotations:
        recorded: dict[str, Any] = {}
        if metadata.labels:
            recorded["labels"] = dict(metadata.labels)
        if metadata.annotations:
            recorded["annotations"] = dict(metadata.annotations)
        spec["metadata"] = recorded
    return spec


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON: sorted keys, no spaces, anything JSON lacks written as its ``str``. Equal
    values give equal bytes, which is what a digest of them needs."""
    return _ENCODER.encode(value).encode()


def computed_digest(document: AnyManifest) -> bytes:
    """The SHA-256 of the canonical JSON of the document as applied, computed."""
    return hashlib.sha256(canonical_json(with_metadata(spec_document(document), document))).digest()


def document_digest(document: AnyManifest) -> bytes:
    """``computed_digest(document)``, kept from the manifest cache when this document was loaded through it."""
    kept = _REMEMBERED.get(document)
    return kept if kept is not None else computed_digest(document)


def remember(pairs: Iterable[tuple[AnyManifest, bytes]]) -> None:
    """Keep these documents' digests (``computed_digest``'s, kept with them) for ``document_digest``, instead of
    those of the set loaded before."""
    _REMEMBERED.replace(pairs)


def remember_more(pairs: Iterable[tuple[AnyManifest, bytes]]) -> None:
    """Keep these documents' digests too: those of a file of the set loaded last, read back from the cache after
    the load (``schemas.caching`` reads a file's documents when one is first asked for)."""
    _REMEMBERED.add(pairs)
