"""Records made from the resources table's rows: ``record_of`` for one row, ``RecordRows`` for all of them, each
decoded only when first read.

A plan made from a kept trace (``controller.kept_traces``) reads the records of the few resources it plans again
and, of every other one, only its key and its stack. Decoding the specs of every row (33,000 JSON values at
10,000 VMs) was a fifth of a ``diff`` after a one-file edit; ``RecordRows`` keeps each row as the driver gave it
until its record is asked for, and answers the stack, and whether the stored specs may hold a secret
(``database.sealing.stored_may_hold_secrets``), from the row's text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from nebctl.core.keys import Kind, ResourceKey
from nebctl.database.records import ResourceRecord
from nebctl.database.sealing import SECRET_PATHS, stored_may_hold_secrets

# A record's columns, in the order ``record_of`` reads them.
RECORD_COLUMNS = (
    "kind",
    "namespace",
    "name",
    "stack",
    "desired",
    "desired_hash",
    "applied",
    "applied_hash",
    "generation",
    "status",
    "live",
    "host",
    "created_at",
    "updated_at",
)
_STACK, _DESIRED, _APPLIED, _APPLIED_HASH, _STATUS = (
    RECORD_COLUMNS.index(name) for name in ("stack", "desired", "applied", "applied_hash", "status")
)

Processors = Sequence[Callable[[Any], Any] | None]
"""What turns each column's value, as the driver gives it, into the record's (``direct.raw_rows``)."""


def record_of(values: Sequence[Any]) -> ResourceRecord:
    """A record from its columns' values, in the order of ``RECORD_COLUMNS``. Unpacked by position: building a
    dict of them per row was 6 % more of listing 10,000 records."""
    kind, namespace, name, stack, desired, desired_hash, applied, applied_hash = values[:8]
    generation, status, live, host, created_at, updated_at = values[8:]
    return ResourceRecord(
        kind=Kind(kind),
        namespace=namespace,
        name=name,
        stack=stack,
        desired=desired,
        desired_hash=desired_hash,
        applied=applied,
        applied_hash=applied_hash,
        generation=generation,
        status=status,
        live=live or {},
        host=host,
        created_at=created_at,
        updated_at=updated_at,
    )


class RecordRows(Mapping[ResourceKey, ResourceRecord]):
    """Every record read, by key, in the order read; each decoded from its row when first asked for, then the same
    object. Views (``of_stack``, ``with_records``) share the rows and what was decoded."""

    def __init__(
        self,
        rows: dict[ResourceKey, Sequence[Any]],
        processors: Processors,
        decoded: dict[ResourceKey, ResourceRecord] | None = None,
    ) -> None:
        self._rows = rows
        self._processors = processors
        self._decoded: dict[ResourceKey, ResourceRecord] = {} if decoded is None else decoded

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]], processors: Processors) -> RecordRows:
        """The records of ``rows`` (each the values of ``RECORD_COLUMNS``, as the driver gave them)."""
        return cls({ResourceKey(Kind(row[0]), row[1], row[2]): row for row in rows}, processors)

    def __getitem__(self, key: ResourceKey) -> ResourceRecord:
        try:
            return self._decoded[key]
        except KeyError:
            row = self._rows[key]  # a key that is not there raises here
        record = self._decoded[key] = record_of(
            [value if process is None else process(value) for value, process in zip(row, self._processors, strict=True)]
        )
        return record

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[ResourceKey]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def of_stack(self, stack: str) -> RecordRows:
        """The records of ``stack``, told from each row's stack without decoding it."""
        return RecordRows(
            {key: row for key, row in self._rows.items() if row[_STACK] == stack}, self._processors, self._decoded
        )

    def summary(self, key: ResourceKey) -> tuple[str, str | None, str]:
        """The record's stack, the digest of its applied spec and its status, from its row (these columns are
        text, which no driver converts)."""
        row = self._rows[key]
        return row[_STACK], row[_APPLIED_HASH], row[_STATUS]

    def may_hold_secrets(self, key: ResourceKey) -> bool:
        """Whether the record's stored specs may hold a secret (sealed, or in clear), told from the row's text: a
        record of a kind without secrets, or whose specs do not even name where one goes, holds none."""
        if key.kind not in SECRET_PATHS:
            return False
        row = self._rows[key]
        return stored_may_hold_secrets(key.kind, row[_DESIRED]) or stored_may_hold_secrets(key.kind, row[_APPLIED])

    def with_records(self, records: Mapping[ResourceKey, ResourceRecord]) -> RecordRows:
        """These records, with those of ``records`` (of keys among them) in place of their rows'."""
        return RecordRows(self._rows, self._processors, {**self._decoded, **records})
