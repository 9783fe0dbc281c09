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
Used by ``Controller`` when given one; ``nebctl serve`` gives its controller one.
"""

from __future__ import annotations

import threading
from typing import Any

from nebctl.core.keys import ResourceKey
from nebctl.database.records import ResourceRecord
from nebctl.database.store import Store


class RecordsCache:
    """The records last read, each with the stamp its row had; reads are serialised (one plan at a time)."""

    def __init__(self) -> None:
        self._kept: dict[ResourceKey, tuple[tuple[Any, ...], ResourceRecord]] = {}
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

    def clear(self) -> None:
        with self._lock:
            self._kept = {}
