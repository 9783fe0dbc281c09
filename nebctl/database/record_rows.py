"""Records made from the resources table's rows: ``record_of`` for one row, ``RecordRows`` for all of them, each
decoded only when first read, and ``KnownRows`` for all of them when their keys are known already, each row read
only when its record is.

A plan made from a kept trace (``controller.kept_traces``) reads the records of the few resources it plans again
and, of every other one, only its key and its stack. Decoding the specs of every row (33,000 JSON values at
10,000 VMs) was a fifth of a ``diff`` after a one-file edit; ``RecordRows`` keeps each row as the driver gave it
until its record is asked for, and answers the stack, and whether the stored specs may hold a secret
(``database.sealing.stored_may_hold_secrets``), from the row's text. When the database still holds the very rows a
kept trace was made from, even reading them (and looking for secrets in their text) was a tenth of that ``diff``:
the trace keeps what ``RecordRows`` answers without decoding (``summaries``), and ``KnownRows`` answers the same
from that, reading a row from the database only when its record is asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from nebctl.core.deferred import Deferred
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
_STACK, _DESIRED, _APPLIED, _APPLIED_HASH, _STATUS, _LIVE, _HOST = (
    RECORD_COLUMNS.index(name) for name in ("stack", "desired", "applied", "applied_hash", "status", "live", "host")
)

ROW_DIGEST_SIZE = 16
"""The bytes of each digest ``RecordRows.row_digests`` gives."""

Processors = Sequence[Callable[[Any], Any] | None]
"""What turns each column's value, as the driver gives it, into the record's (``direct.raw_rows``)."""

RowSummary = tuple[str, str | None, str, bool]
"""What a row tells without being decoded: the record's stack, the digest of its applied spec, its status, and
whether its stored specs may hold a secret."""


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


_UNREAD: Any = object()


class RowView:
    """A record as planning's steps read it (``reconcilers.base.RecordView``: its stack, applied spec, status, live
    state and host), from its row: the applied spec and the live state are decoded when first read, the desired
    spec and the times never. ``RecordRows.views`` hands them out for a pass over every record that reads a few
    columns of each (what an observation records of each VM): decoding every column of 10,000 rows was 0.18 s, the
    desired spec and the times 0.1 s of it."""

    __slots__ = ("_applied", "_live", "_processors", "_row")

    def __init__(self, row: Sequence[Any], processors: Processors) -> None:
        self._row = row
        self._processors = processors
        self._applied: Any = _UNREAD
        self._live: Any = _UNREAD

    def _decoded(self, column: int) -> Any:
        value, process = self._row[column], self._processors[column]
        return value if process is None else process(value)

    @property
    def stack(self) -> str:
        return str(self._row[_STACK])

    @property
    def status(self) -> str:
        return str(self._row[_STATUS])

    @property
    def host(self) -> str | None:
        host = self._row[_HOST]
        return None if host is None else str(host)

    @property
    def applied(self) -> dict[str, Any] | None:
        if self._applied is _UNREAD:
            self._applied = self._decoded(_APPLIED)
        return self._applied  # type: ignore[no-any-return]

    @property
    def live(self) -> dict[str, Any]:
        if self._live is _UNREAD:
            self._live = self._decoded(_LIVE) or {}
        return self._live  # type: ignore[no-any-return]


def by_key(rows: Sequence[Sequence[Any]]) -> dict[ResourceKey, Sequence[Any]]:
    """``rows`` (each the values of ``RECORD_COLUMNS``) by their records' keys, in their order."""
    return {ResourceKey(Kind(row[0]), row[1], row[2]): row for row in rows}


class RecordRows(Mapping[ResourceKey, ResourceRecord]):
    """Every record read, by key, in the order read; each decoded from its row when first asked for, then the same
    object. Views (``of_stack``, ``with_records``) share the rows, what was decoded and what was told of secrets."""

    def __init__(
        self,
        rows: dict[ResourceKey, Sequence[Any]],
        processors: Processors,
        decoded: dict[ResourceKey, ResourceRecord] | None = None,
        secrets: dict[ResourceKey, bool] | None = None,
        digests: dict[ResourceKey, bytes] | None = None,
    ) -> None:
        self._rows = rows
        self._processors = processors
        self._decoded: dict[ResourceKey, ResourceRecord] = {} if decoded is None else decoded
        # ``may_hold_secrets`` by key, as told: revealing the secrets asks it of every row, and so does keeping a
        # trace of the same plan (``summaries``); the text is searched once.
        self._secrets: dict[ResourceKey, bool] = {} if secrets is None else secrets
        # ``row_digests`` by key, as told: a plan after an apply tells the moved records and the observation's
        # rows to write again from the same digests.
        self._digests: dict[ResourceKey, bytes] = {} if digests is None else digests

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]], processors: Processors) -> RecordRows:
        """The records of ``rows`` (each the values of ``RECORD_COLUMNS``, as the driver gave them)."""
        return cls(by_key(rows), processors)

    def __getitem__(self, key: ResourceKey) -> ResourceRecord:
        try:
            return self._decoded[key]
        except KeyError:
            row = self._row(key)  # a key that is not there raises here
        record = self._decoded[key] = record_of(
            [value if process is None else process(value) for value, process in zip(row, self._processors, strict=True)]
        )
        return record

    def _row(self, key: ResourceKey) -> Sequence[Any]:
        return self._rows[key]

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[ResourceKey]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def raw_rows(self) -> Mapping[ResourceKey, Sequence[Any]]:
        """Each row read, by key, as the driver gave it (the values of ``RECORD_COLUMNS``, undecoded); of a view, the
        rows it shares."""
        return self._rows

    def of_stack(self, stack: str) -> RecordRows:
        """The records of ``stack``, told from each row's stack without decoding it."""
        rows = {key: row for key, row in self._rows.items() if row[_STACK] == stack}
        return RecordRows(rows, self._processors, self._decoded, self._secrets, self._digests)

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
        told = self._secrets.get(key)
        if told is None:
            row = self._rows[key]
            told = stored_may_hold_secrets(key.kind, row[_DESIRED]) or stored_may_hold_secrets(key.kind, row[_APPLIED])
            self._secrets[key] = told
        return told

    def with_records(self, records: Mapping[ResourceKey, ResourceRecord]) -> RecordRows:
        """These records, with those of ``records`` (of keys among them) in place of their rows'."""
        return RecordRows(self._rows, self._processors, {**self._decoded, **records}, self._secrets, self._digests)

    def summaries(self) -> dict[ResourceKey, RowSummary]:
        """What each row tells without being decoded (``summary``, ``may_hold_secrets``), by key in this order: what
        ``KnownRows`` answers from."""
        return {key: (*self.summary(key), self.may_hold_secrets(key)) for key in self}

    def row_digests(self) -> dict[ResourceKey, bytes]:
        """A digest of each row as read (every column, as the driver gave it, undecoded), by key in this order: equal
        digests, the same row (one written again has another time, even with the same values). Each told once for
        all the views of these rows: about 20 ms for 10,000 rows, a tenth of decoding them."""
        told, rows = self._digests, self._rows
        if len(told) < len(rows):
            digest = hashlib.blake2b
            for key, row in rows.items():
                if key not in told:
                    # The columns apart by a NUL, which none holds (JSON text escapes it; the others are names,
                    # digests, numbers and times); the host by its repr, which tells a row without one.
                    kind, namespace, name, stack, desired, desired_hash, applied, applied_hash = row[:8]
                    generation, status, live, host, created_at, updated_at = row[8:]
                    told[key] = digest(
                        f"{kind}\0{namespace}\0{name}\0{stack}\0{desired}\0{desired_hash}\0{applied}\0"
                        f"{applied_hash}\0{generation}\0{status}\0{live}\0{host!r}\0{created_at}\0{updated_at}".encode(),
                        digest_size=ROW_DIGEST_SIZE,
                    ).digest()
        return {key: told[key] for key in rows}

    def views(self) -> Mapping[ResourceKey, ResourceRecord | RowView]:
        """Each record as planning's steps read it, by key in this order: the record where it was decoded already,
        else a ``RowView`` of its row, which decodes only the columns read."""
        decoded, processors = self._decoded, self._processors
        return {key: decoded.get(key) or RowView(row, processors) for key, row in self._rows.items()}


class KnownSummaries(Mapping[ResourceKey, RowSummary]):
    """``RecordRows.summaries`` as a kept trace holds them: in columns, so that reading them back builds no tuple per
    record (about 10 ms of each command that reads the trace of 10,000 records); the applied digests and
    statuses, which only a plan's fingerprint reads, stay pickled until read. ``of_stack`` views share the columns."""

    __slots__ = ("_changed", "_keys", "_places", "_rest", "_secrets", "_stacks")

    def __init__(self, summaries: Mapping[ResourceKey, RowSummary]) -> None:
        same: dict[str, str] = {}  # one object per distinct stack, which a pickle writes once
        values = list(summaries.values())
        self._keys = tuple(summaries)
        self._stacks = tuple(same.setdefault(stack, stack) for stack, _, _, _ in values)
        self._secrets = bytes(secrets for _, _, _, secrets in values)
        self._rest = Deferred(tuple((applied_hash, status) for _, applied_hash, status, _ in values))
        self._places: dict[ResourceKey, int] | None = None
        self._changed: Mapping[ResourceKey, RowSummary] = {}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if len(self._keys) != len(self._stacks) or self._changed:  # a view: its own columns
            return KnownSummaries, (dict(self),)
        return KnownSummaries._read_back, (self._keys, self._stacks, self._secrets, self._rest)

    @classmethod
    def _read_back(
        cls, keys: tuple[ResourceKey, ...], stacks: tuple[str, ...], secrets: bytes, rest: Deferred[Any]
    ) -> KnownSummaries:
        read: KnownSummaries = cls.__new__(cls)
        read._keys, read._stacks, read._secrets, read._rest, read._places = keys, stacks, secrets, rest, None
        read._changed = {}
        return read

    def with_changed(self, changed: Mapping[ResourceKey, RowSummary]) -> KnownSummaries | None:
        """These summaries, with those of ``changed`` (rows written since, of keys among these, each of the same
        stack) in their place, sharing the columns; None when one is not among these or changed stack."""
        if not changed:
            return self
        stacks, index = self._stacks, self._index()
        for key, (stack, _, _, _) in changed.items():
            place = index.get(key)
            if place is None or stacks[place] != stack:
                return None
        view: KnownSummaries = KnownSummaries.__new__(KnownSummaries)
        view._keys, view._stacks, view._secrets, view._rest = self._keys, stacks, self._secrets, self._rest
        view._places, view._changed = self._places, {**self._changed, **changed}
        return view

    def _index(self) -> dict[ResourceKey, int]:
        """Each key's place in the columns, built when first asked."""
        if self._places is None:
            self._places = {each: place for place, each in enumerate(self._keys)}
        return self._places

    def _place(self, key: ResourceKey) -> int:
        return (self._places if self._places is not None else self._index())[key]

    def __getitem__(self, key: ResourceKey) -> RowSummary:
        place = self._place(key)
        changed = self._changed.get(key)
        if changed is not None:
            return changed
        applied_hash, status = self._rest.get()[place]
        return self._stacks[place], applied_hash, status, bool(self._secrets[place])

    def __contains__(self, key: object) -> bool:
        # A plan asks this of every manifest's key, twice: a dictionary's own test, without a call more.
        return key in (self._places if self._places is not None else self._index())

    def __iter__(self) -> Iterator[ResourceKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def stack(self, key: ResourceKey) -> str:
        return self._stacks[self._place(key)]

    def may_hold_secrets(self, key: ResourceKey) -> bool:
        place = self._place(key)
        changed = self._changed.get(key)
        return changed[3] if changed is not None else bool(self._secrets[place])

    def of_stack(self, stack: str) -> KnownSummaries:
        """The summaries of ``stack``'s records, sharing these columns."""
        view: KnownSummaries = KnownSummaries.__new__(KnownSummaries)
        stacks = self._stacks
        view._places = {key: place for key, place in self._index().items() if stacks[place] == stack}
        view._keys = tuple(view._places)
        view._stacks, view._secrets, view._rest = self._stacks, self._secrets, self._rest
        view._changed = {key: summary for key, summary in self._changed.items() if key in view._places}
        return view


class RowsMovedError(Exception):
    """A row that ``KnownRows`` knew of is no longer in the database: it was written since it was known, and a plan
    made from these records would mix two states of the database. (Not a ``KeyError``: ``Mapping.get`` must not take
    it for a key that is not there.)"""


class RowSource(Protocol):
    """Where ``KnownRows`` reads rows from (``Store.known_rows``): each the values of ``RECORD_COLUMNS`` as the
    driver gives them, with what turns them into the record's."""

    def rows(self, keys: Sequence[ResourceKey]) -> tuple[Sequence[Sequence[Any]], Processors]:
        """The rows of ``keys`` (at most ``ROWS_AT_ONCE``) that there are, in any order."""
        ...

    def every_row(self) -> tuple[Sequence[Sequence[Any]], Processors]:
        """Every row."""
        ...


# The rows ``KnownRows`` reads in one query: the one asked for and the next ones not read yet, in key order. The
# records a plan reads most often come together in that order (the VMs of one manifest file): after an edit of a
# file of 100 VMs, two queries read them, where reading 64 rows one query each took 7 ms.
ROWS_AT_ONCE = 64


class _Reading:
    """What the views of one ``KnownRows`` share: the keys it knows, in order, and the rows read so far. Past a
    quarter of the rows, it reads every row at once, in one query (a plan that observed afresh words each VM's
    drift, and reads them all)."""

    def __init__(self, source: RowSource, known: Mapping[ResourceKey, RowSummary]) -> None:
        self.source = source
        self.known = known
        self.rows: dict[ResourceKey, Sequence[Any]] = {}
        self.processors: Processors = ()
        self._order: list[ResourceKey] | None = None
        self._place: dict[ResourceKey, int] = {}

    def row(self, key: ResourceKey) -> Sequence[Any]:
        row = self.rows.get(key)
        if row is not None:
            return row
        if key not in self.known:
            raise KeyError(key)
        if len(self.rows) + ROWS_AT_ONCE <= len(self.known) // 4:
            read, self.processors = self.source.rows(self._unread_from(key))
        else:
            read, self.processors = self.source.every_row()
        for found_key, found in by_key(read).items():
            self.rows.setdefault(found_key, found)
        row = self.rows.get(key)
        if row is None:
            raise RowsMovedError(f"the record of {key} is no longer in the database")
        return row

    def _unread_from(self, key: ResourceKey) -> list[ResourceKey]:
        """``key`` and the next keys whose rows were not read, up to ``ROWS_AT_ONCE``."""
        if self._order is None:
            self._order = list(self.known)
            self._place = {each: place for place, each in enumerate(self._order)}
        unread = [key]
        for each in self._order[self._place[key] + 1 :]:
            if len(unread) == ROWS_AT_ONCE:
                break
            if each not in self.rows:
                unread.append(each)
        return unread


class KnownRows(RecordRows):
    """``RecordRows`` of rows whose keys and summaries are known (``RecordRows.summaries``, kept by a trace when the
    database still holds those very rows): a row is read from the database when its record is first asked for,
    with the next ones not read yet (``ROWS_AT_ONCE``), or every row at once. A row that is gone raises
    ``RowsMovedError``; one written since it was known is read as it is now, so whoever reads them checks that
    nothing was written meanwhile (the change counters, read before and after)."""

    def __init__(
        self,
        known: Mapping[ResourceKey, RowSummary],
        source: RowSource | _Reading,
        decoded: dict[ResourceKey, ResourceRecord] | None = None,
    ) -> None:
        self._known = known if isinstance(known, KnownSummaries) else KnownSummaries(known)
        self._reading = source if isinstance(source, _Reading) else _Reading(source, self._known)
        super().__init__(self._reading.rows, (), decoded)

    def _row(self, key: ResourceKey) -> Sequence[Any]:
        if key not in self._known:
            raise KeyError(key)
        row = self._reading.row(key)
        self._processors = self._reading.processors
        return row

    @property
    def read_rows(self) -> int:
        """How many rows were read from the database."""
        return len(self._reading.rows)

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def __iter__(self) -> Iterator[ResourceKey]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)

    def of_stack(self, stack: str) -> RecordRows:
        return KnownRows(self._known.of_stack(stack), self._reading, self._decoded)

    def summary(self, key: ResourceKey) -> tuple[str, str | None, str]:
        stack, applied_hash, status, _ = self._known[key]
        return stack, applied_hash, status

    def may_hold_secrets(self, key: ResourceKey) -> bool:
        return self._known.may_hold_secrets(key)

    def with_records(self, records: Mapping[ResourceKey, ResourceRecord]) -> RecordRows:
        return KnownRows(self._known, self._reading, {**self._decoded, **records})

    def summaries(self) -> dict[ResourceKey, RowSummary]:
        return {key: self._known[key] for key in self._known}

    def views(self) -> Mapping[ResourceKey, ResourceRecord | RowView]:
        # Its rows are read from the database as their records are asked for: every record, for a pass over all.
        return self

    def read_views(self) -> Mapping[ResourceKey, ResourceRecord | RowView]:
        """``views`` of the records whose rows were read so far, and only those (``row_digests`` digests them)."""
        decoded, processors, known = self._decoded, self._reading.processors, self._known
        return {
            key: decoded.get(key) or RowView(row, processors) for key, row in self._reading.rows.items() if key in known
        }
