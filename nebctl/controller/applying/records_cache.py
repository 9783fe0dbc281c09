"""The records of the resources table kept between plans by a long-lived controller (the service), so that a
plan reads again only the rows written since the last one instead of decoding every spec of every row.

Each read first lists every row's stamp (``Store.resource_stamps``: its id, stack, generation, status, host,
spec digests and last update, which change whenever the row is written, without reading any spec), then reads
the records whose stamp is new or moved (``Store.get_resources``), and keeps the rest from before. The result
is what ``Store.list_resources()`` gives: every record, in its order. A row written between the two reads is
taken as then read (its newer content, kept under its older stamp, so it is read again next time); a row
deleted between them is left out, as a read a moment later would. When most rows moved (the first read), all
of them are read in one query.

The records handed out are shared with the next plans: nothing may change them in place (the planner, the
journal and the service copy what they change, as they already must for records read from the database).
The records as revealed for planning (their sealed secrets replaced by the manifests' matching values,
``controller.applying.controller.reveal_records``) are kept too, each with the record and the manifest it was
revealed from: a record neither of whose row nor manifest changed since (the same objects: this cache and the
manifest cache give unchanged ones again) is revealed as before without comparing its secrets again.
Used by ``Controller`` when given one; ``nebctl serve`` gives its controller one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nebctl.core.keys import ResourceKey
from nebctl.database.records import ResourceRecord
from nebctl.database.sealing import KeyRing
from nebctl.database.store import Store

Reveal = Callable[
    [Sequence[ResourceRecord], Mapping[ResourceKey, Any], KeyRing],
    tuple[dict[ResourceKey, ResourceRecord], list[ResourceRecord]],
]


class RecordsCache:
    """The records last read, each with the stamp its row had; reads are serialised (one plan at a time)."""

    def __init__(self) -> None:
        self._kept: dict[ResourceKey, tuple[tuple[Any, ...], ResourceRecord]] = {}
        # key -> (the record as stored, its manifest, the record revealed, whether it is to be sealed again)
        self._revealed: dict[ResourceKey, tuple[ResourceRecord, object, ResourceRecord, bool]] = {}
        self._ring: KeyRing | None = None
        self._lock = threading.Lock()
        self.read_rows = 0  # rows whose records the last read decoded (the others were kept): for tests, metrics

    def records(self, store: Store) -> list[ResourceRecord]:
        """Every record of ``store``, as ``store.list_resources()`` lists them."""
        with self._lock:
            stamps = store.resource_stamps()
            kept = self._kept
            moved = [key for key, stamp in stamps if (found := kept.get(key)) is None or found[0] != stamp]
            if len(moved) * 2 > len(stamps):
                fresh = {record.key: record for record in store.list_resources()}
            else:
                fresh = {record.key: record for record in store.get_resources(moved)} if moved else {}
            self.read_rows = len(fresh)
            now: dict[ResourceKey, tuple[tuple[Any, ...], ResourceRecord]] = {}
            result: list[ResourceRecord] = []
            for key, stamp in stamps:
                record = fresh.get(key)
                if record is None:
                    before = kept.get(key)
                    if before is None or before[0] != stamp:
                        continue  # deleted between the two reads
                    record = before[1]
                now[key] = (stamp, record)
                result.append(record)
            self._kept = now
            return result

    def revealed(
        self, stored: Sequence[ResourceRecord], documents: Mapping[ResourceKey, Any], ring: KeyRing, reveal: Reveal
    ) -> tuple[dict[ResourceKey, ResourceRecord], list[ResourceRecord]]:
        """What ``reveal(stored, documents, ring)`` gives (the records by key, in ``stored``'s order, and those
        to seal again), calling it only for the records whose row or manifest changed since the last call (or
        all of them when the key ring changed). A ``PlanError`` it raises keeps nothing new."""
        with self._lock:
            kept = self._revealed if ring is self._ring else {}
            changed = []
            for record in stored:
                found = kept.get(record.key)
                if found is None or found[0] is not record or found[1] is not documents.get(record.key):
                    changed.append(record)
            fresh, resealed = reveal(changed, documents, ring)
            again = {id(record) for record in resealed}
            by_stored = {record.key: record for record in changed}
            now: dict[ResourceKey, tuple[ResourceRecord, object, ResourceRecord, bool]] = {}
            revealed: dict[ResourceKey, ResourceRecord] = {}
            to_seal: list[ResourceRecord] = []
            for record in stored:
                key = record.key
                if key in fresh:
                    clear = fresh[key]
                    entry = (by_stored[key], documents.get(key), clear, id(clear) in again or id(record) in again)
                else:
                    entry = kept[key]
                now[key] = entry
                revealed[key] = entry[2]
                if entry[3]:
                    to_seal.append(entry[2])
            self._revealed, self._ring = now, ring
            return revealed, to_seal

    def clear(self) -> None:
        with self._lock:
            self._kept = {}
            self._revealed = {}
