"""The trace of a stack's last whole plan, kept between processes, so that ``diff`` or ``apply`` after an edit of a
few manifests redoes only what moved (``planning.incremental``) instead of planning every resource again.

Used by the CLI's ``diff`` and ``apply`` (``Controller`` with ``traces``), in ``STATE_DIR/cache/traces``. A kept
trace is handed to the planner with the records that are not those it was made from. When the change counters
(``database.versions``; every write of a record raises them) and the summary of the resources table
(``Store.resources_stamp``: a database made again from nothing counts from zero again) are those it was kept with,
read both before and after the records are, there are none. Otherwise (an apply wrote records, another process
did), a digest of each row as a plan read it (kept with the trace; the next plan digests the rows it read in one
query, not reading them again) names the records that moved; with a record more or less, the trace is not used.
The planner compares the rest: those records, the manifests (their stamps, ``ManifestSet.stamps``), the options
and what it reads of the live view (``planning.incremental``).

Only the trace of a whole plan is kept (a plan made from a kept trace leaves it in place: it stays valid for the
next edit, which compares its manifests with the same stamps). What it holds of each manifest and record for the
installation-wide steps stays pickled value by value (``PickledMapping``): it is read back only for the few that
moved. Its resolved specs and observed states, and what planning read of the live view, stay pickled whole
(``core.deferred``) until a plan reads one: a plan after an edit of a few manifests most often reads none of them.
It also keeps what each record's row told undecoded (``database.record_rows.KnownSummaries``): while the database
holds the very records it was made from, a plan reads the rows of the records it reads, and no other
(``Store.known_rows``; the controller checks the counters again at the end). The database's state it holds for is
an entry of its own: a plan made from the trace that wrote nothing but what it observed (which raises the counters
and changes no record) moves that state to the counters it leaves (``advance``), so that observing the fleet again
does not cost the next command its trace. After an apply, the plan that told the records it wrote from every row
moves the state too, with those records and what their rows tell: the plans after it read few rows again. The
trace holds the resolved specs, the changes and the installation-wide
results, never a manifest, a record's specs or a secret. A secret in
clear (cloud-init data, a hook's environment) in a resource's resolved spec or observed state is the manifest's
value: it is written as a marker (``FROM_MANIFEST``), and put back from the manifest when the trace is read, for the
resources whose manifest has the stamp it had (the same text, so the same secret; the others are planned again
anyway). A resource whose plan holds a secret anywhere else (a change or drift to show, a value that is not the
manifest's) is left out, and planned again every time. An entry written by another version of nebctl, or truncated,
corrupt or unreadable, is never used (``schemas.caching.Entries``); deleting the directory is always safe.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import pickle
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from nebctl.controller.kept_plans import code_digest
from nebctl.controller.planning import PlanTrace, kept_trace, with_moved_records
from nebctl.controller.planning.changes import Outcome
from nebctl.controller.planning.incremental import Seen
from nebctl.controller.planning.incremental import seen as seen_in
from nebctl.core.deferred import Deferred, DeferredPart
from nebctl.core.keys import ResourceKey
from nebctl.database.record_rows import KnownSummaries, RecordRows, RowSummary
from nebctl.database.sealing import SECRET_PATHS, has_clear_secret, is_sealed, map_secrets
from nebctl.database.store import Store
from nebctl.database.versions import Versions
from nebctl.reconcilers.base import LiveView
from nebctl.schemas.caching import Entries
from nebctl.schemas.models import AnyManifest

log = logging.getLogger(__name__)


class _FromManifest:
    """Where a kept trace had a secret: the manifest's value, put back when the trace is read."""

    def __reduce__(self) -> str:
        return "FROM_MANIFEST"  # the one instance, whichever process reads it back

    def __repr__(self) -> str:
        return "FROM_MANIFEST"


FROM_MANIFEST = _FromManifest()


class PickledMapping(Mapping[ResourceKey, Any]):
    """A mapping whose values stay pickled, each on its own, until one is read. A trace's inputs of every manifest
    and record are compared only for those that moved (a few, after an edit): reading all of them back was about
    half of the time to read a trace of 10,000 VMs. The pickles are kept end to end in one string of bytes, with
    where each ends: reading back a bytes object per value was still a tenth of it."""

    __slots__ = ("_ends", "_keys", "_pickled", "_places")

    def __init__(self, values: Mapping[ResourceKey, Any]) -> None:
        pickled = [pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) for value in values.values()]
        self._keys = tuple(values)
        self._pickled = b"".join(pickled)
        self._ends = array("Q", itertools.accumulate(len(each) for each in pickled))
        self._places: dict[ResourceKey, int] | None = None

    def __getstate__(self) -> tuple[tuple[ResourceKey, ...], bytes, bytes]:
        return self._keys, self._pickled, self._ends.tobytes()

    def __setstate__(self, state: tuple[tuple[ResourceKey, ...], bytes, bytes]) -> None:
        self._keys, self._pickled, ends = state
        self._ends = array("Q")
        self._ends.frombytes(ends)
        self._places = None

    def _place(self, key: object) -> int | None:
        if self._places is None:  # built when first asked: most plans ask none, or a few
            self._places = {each: place for place, each in enumerate(self._keys)}
        return self._places.get(key) if isinstance(key, ResourceKey) else None

    def __getitem__(self, key: ResourceKey) -> Any:
        place = self._place(key)
        if place is None:
            raise KeyError(key)
        start = self._ends[place - 1] if place else 0
        return pickle.loads(memoryview(self._pickled)[start : self._ends[place]])

    def __contains__(self, key: object) -> bool:
        return self._place(key) is not None

    def __iter__(self) -> Iterator[ResourceKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class _NotTheManifestsError(Exception):
    """A secret in clear that is not the manifest's value: it cannot be put back from the manifest."""


@dataclass(frozen=True)
class _Entry:
    """One kept trace, and the resources whose secrets it left as ``FROM_MANIFEST``. ``token`` ties it to its
    ``_State``."""

    token: bytes
    trace: PlanTrace
    hidden: frozenset[ResourceKey] = frozenset()
    # A digest of each record's row (``_row_digests``): read only when records were written since.
    rows: Deferred[Mapping[ResourceKey, bytes]] | None = None
    # What each record's row tells undecoded (``RecordRows.summaries``), for a plan while the database still holds
    # those rows: it reads a row only when it reads its record (``KnownRows``).
    known: KnownSummaries | None = None


@dataclass(frozen=True)
class _State:
    """The state of the database and the live view a kept trace (the ``_Entry`` of the same ``token``) holds for:
    an entry of its own, so that a plan made from the trace that only kept what it observed (which raises the
    counters and changes no record), or that found its results holding for another view, can say so without writing
    the trace again (``advance``)."""

    token: bytes
    versions: Versions
    table: tuple[Any, ...]
    seen: Deferred[Seen]  # what planning read of the live view (``Stamped.seen``)
    observation: bytes | None  # that view's identity (``Stamped.observation``)
    # The records written since the trace was kept (an apply's), with what their rows tell now, when a plan made
    # from the trace told them and advanced the state to its counters: while it holds, they are the moved ones.
    moved: Mapping[ResourceKey, RowSummary] = dataclasses.field(default_factory=dict)


# In place of what a kept trace's entry read of the live view, which its state holds.
_IN_STATE: Deferred[Seen] = Deferred(Seen({}, {}, {}, {}))


@dataclass(frozen=True)
class KeptTrace:
    """A stack's kept trace as read (``KeptTraces.read``), before the records are, and whether the database holds
    the very records it was made from (the change counters the caller read, and the table's summary, are those it
    was kept with)."""

    entry: _Entry
    state: _State
    holds: bool

    @property
    def known(self) -> Mapping[ResourceKey, RowSummary] | None:
        """What each record's row tells undecoded, when the database holds the records the trace was made from (or
        those its state names as written since): a plan reads the rows of those it reads (``Store.known_rows``),
        if nothing is written meanwhile."""
        if not self.holds or self.entry.known is None:
            return None
        # With the written rows' summaries in their place; none (every row read at once) if they cannot be.
        return self.entry.known.with_changed(self.state.moved)


class KeptTraces:
    """The kept trace of each stack of one database, in ``directory``."""

    def __init__(self, directory: Path, *, database: str) -> None:
        self._entries = Entries(directory, code_digest())
        self._database = database.encode()

    def _name(self, stack: str) -> str:
        return self._entries.key(b"trace", self._database, stack.encode())

    def _state_name(self, stack: str) -> str:
        return self._entries.key(b"trace-state", self._database, stack.encode())

    def read(self, stack: str, versions: Versions, store: Store) -> KeptTrace | None:
        """The kept trace of ``stack`` and its state, and whether the database holds the records it was made from
        (``versions`` are the change counters the caller read); None when there is none."""
        state = self._entries.get(self._state_name(stack))
        if not isinstance(state, _State):
            return None
        kept = self._entries.get(self._name(stack))
        if not isinstance(kept, _Entry) or kept.token != state.token:
            return None
        return KeptTrace(kept, state, _holds(state, versions, store))

    def find(
        self,
        stack: str,
        versions: Versions,
        store: Store,
        documents: Mapping[ResourceKey, AnyManifest],
        stamps: Mapping[ResourceKey, str],
        *,
        read: KeptTrace | None = None,
        rows: RecordRows | None = None,
    ) -> PlanTrace | None:
        """The kept trace of ``stack`` (``read`` already, or read now), naming the records that are not those it was
        made from (none when ``versions``, the change counters the caller read before its records and again after
        them, and the table's summary are those it was kept with; otherwise each row's digest tells, of ``rows``,
        every row as the caller read it at ``versions``, or as read now); None when a record was added or removed
        since. Its secrets are put back from ``documents``, the manifests of this plan, for those whose ``stamps``
        are as they were."""
        found = read if read is not None else self.read(stack, versions, store)
        if found is None:
            return None
        kept, state = found.entry, found.state
        trace = kept.trace
        if trace.stamped is not None:
            stamped = dataclasses.replace(trace.stamped, seen=state.seen, observation=state.observation)
            trace = dataclasses.replace(trace, stamped=stamped)
        if found.holds:
            trace = with_moved_records(trace, frozenset(state.moved))
        else:
            moved = _moved_rows(kept, versions, store, rows)
            if moved is None:
                return None
            trace = with_moved_records(trace, moved)
        if not kept.hidden or trace.stamped is None:
            return trace
        before = trace.stamped.stamps
        specs, observed = dict(trace.specs), dict(trace.observed)
        for key in kept.hidden:
            document = documents.get(key)
            if document is None or stamps.get(key) != before.get(key):
                continue  # planned again: what the trace held of it is not read

            def fill(path: tuple[str, ...], value: object, document: AnyManifest = document) -> object:
                return _in_manifest(document, path) if value is FROM_MANIFEST else value

            specs[key] = map_secrets(key.kind, specs[key], fill)
            if key in observed:
                observed[key] = map_secrets(key.kind, observed[key], fill)
        return dataclasses.replace(trace, specs=specs, observed=observed)

    def keep(
        self,
        stack: str,
        trace: PlanTrace,
        stamps: dict[ResourceKey, str],
        versions: Versions,
        store: Store,
        *,
        rows: RecordRows | None = None,
    ) -> bool:
        """Keep ``trace`` (of a whole plan, made from the records as ``versions`` counts them) for the next
        process; whether it was kept. ``rows`` are every row the plan read, in one query (else they are read
        again)."""
        request = trace.request
        if request is None:
            return False
        unkept: set[ResourceKey] = set()
        hiding: set[ResourceKey] = set()
        specs, observed = dict(trace.specs), dict(trace.observed)
        for key, outcome in trace.outcomes.items():
            if key.kind not in SECRET_PATHS:
                continue
            # What a resource's outcome can hold: its resolved spec, its observed state and its record's
            # applied spec (a deletion lists it, an update compares with it).
            spec, seen, record = specs.get(key), observed.get(key), request.records.get(key)
            held = (spec, seen, record.applied if record is not None else None)
            if not any(has_clear_secret(key.kind, value) for value in held):
                continue
            hidden = _hidden(key, spec, seen, outcome, request.documents.get(key))
            if hidden is None:
                unkept.add(key)
                continue
            hiding.add(key)
            specs[key] = hidden[0]
            if hidden[1] is not None:
                observed[key] = hidden[1]
        lean = kept_trace(dataclasses.replace(trace, specs=specs, observed=observed), stamps, frozenset(unkept))
        if lean is None or lean.stamped is None:
            return False
        stamped = lean.stamped
        # The specs and observed states are read back only when a plan asks for one (most often of the few
        # resources it plans again), and together: a resource observed as its spec resolves shares that value.
        both: Deferred[tuple[Mapping[Any, Any], ...]] = Deferred((lean.specs, lean.observed))
        lean = dataclasses.replace(
            lean,
            specs=DeferredPart(both, 0),
            observed=DeferredPart(both, 1),
            stamped=dataclasses.replace(
                stamped,
                inputs=PickledMapping(stamped.inputs),
                records=PickledMapping(stamped.records),
                seen=_IN_STATE,
                observation=None,
            ),
        )
        digests = _row_digests(rows if rows is not None else store.record_rows(), {key: key for key in request.records})
        table = store.resources_stamp()
        if store.change_versions() != versions:
            return False  # a write came between: the table just read may not be the records the plan read
        records = request.records
        known = KnownSummaries(records.summaries()) if isinstance(records, RecordRows) else None
        token = os.urandom(16)
        # The trace first, then its state: a state is never found beside another trace (a crash between them
        # leaves a state whose token is not the trace's).
        self._entries.put(self._name(stack), _Entry(token, lean, frozenset(hiding), Deferred(digests), known))
        self._entries.put(self._state_name(stack), _State(token, versions, table, stamped.seen, stamped.observation))
        log.debug("the trace of this plan of stack %s is kept for the next", stack)
        return True

    def advance(
        self,
        stack: str,
        before: Versions,
        after: Versions,
        store: Store,
        view: LiveView | None = None,
        *,
        read: KeptTrace | None = None,
        moved: Mapping[ResourceKey, RowSummary] | None = None,
        seen: Seen | None = None,
    ) -> bool:
        """Say that the kept trace of ``stack``, made from the records as ``before`` counts them, still holds at
        ``after``: the caller's plan, made from it, wrote nothing but what it observed (no record changes), and
        nothing else was written (``after`` is what the counters say now). With ``view``, the trace's results hold
        for that live view too, which the caller's plan found (``Replan.view_holds``): the next plan compares its
        view with that one. ``read`` is the trace as the caller read it at ``before``. Whether it was said.

        When records moved since the trace was kept (an apply wrote some), ``moved`` are those the caller's plan
        told from every row it read at ``before``, with what their rows told: the state then holds at ``after``
        with them, and the next plan reads only the rows of the records it reads again. The trace takes ``view``
        too. Both only when the caller read this very state and nobody wrote since: otherwise every plan after an
        apply would read every row to tell the moved records, and, on a view other than the trace's, compare it
        and place every VM again. ``seen`` is what planning read of ``view``, when the caller's plan told it."""
        state = self._entries.get(self._state_name(stack))
        if not isinstance(state, _State):
            return False
        if state.versions != before:
            if (view is None and moved is None) or read is None or not _same_state(read.state, state):
                return False
            taken = state
            if moved is not None:
                # The table now, then the counters: a write between them would show in the counters.
                taken = dataclasses.replace(taken, versions=after, table=store.resources_stamp(), moved=dict(moved))
            if store.change_versions() != after:
                return False  # another writer came since the caller's plan: what it told may not hold
            if view is not None:
                taken = dataclasses.replace(taken, seen=_seen_of(view, seen), observation=view.identity)
            self._entries.put(self._state_name(stack), taken)
            return True
        # The table's summary was found as kept when the caller read this very state at these counters, and only
        # the caller wrote since (the counters at ``after`` say so): it did not move, and is not read again.
        checked = read is not None and read.holds and read.state.token == state.token
        if not checked and state.table != store.resources_stamp():
            return False
        if store.change_versions() != after:
            return False
        advanced = dataclasses.replace(state, versions=after)
        if view is not None:
            advanced = dataclasses.replace(advanced, seen=_seen_of(view, seen), observation=view.identity)
        self._entries.put(self._state_name(stack), advanced)
        return True

    def written(
        self,
        stack: str,
        before: Versions,
        after: Versions,
        store: Store,
        moved: Mapping[ResourceKey, RowSummary],
    ) -> bool:
        """Say that the kept trace of ``stack``, which holds for the records as ``before`` counts them (the caller
        found it so, or made it so), holds at ``after`` with the records of ``moved``, written since, with what
        their rows tell now: the caller wrote them (an apply), and nothing else was written (``after`` is what the
        counters say now, and they count only its writing since ``before``). The next plan then reads the rows of
        the records it reads, instead of every row to tell which moved. Whether it was said."""
        state = self._entries.get(self._state_name(stack))
        if not isinstance(state, _State) or state.versions != before:
            return False
        # The table now, then the counters: a write between them would show in the counters.
        table = store.resources_stamp()
        if store.change_versions() != after:
            return False
        advanced = dataclasses.replace(state, versions=after, table=table, moved={**state.moved, **moved})
        self._entries.put(self._state_name(stack), advanced)
        log.debug("the kept trace of stack %s holds with the %d record(s) this apply wrote", stack, len(moved))
        return True


def _seen_of(view: LiveView, told: Seen | None) -> Deferred[Seen]:
    """What planning reads of ``view``: ``told``, if the caller's plan told it, else read now."""
    return Deferred(told if told is not None else seen_in(view, by_host=True))


def _same_state(one: _State, other: _State) -> bool:
    """Whether two reads of a trace's state are the same state: the same trace, at the same counters, on the same
    live view."""
    return one.token == other.token and one.versions == other.versions and one.observation == other.observation


def _holds(state: _State, versions: Versions, store: Store) -> bool:
    """Whether the database is in ``state``: the change counters ``versions`` and the table's summary are its."""
    return state.versions == versions and state.table == store.resources_stamp()


def _row_digests(rows: RecordRows, keys: Mapping[ResourceKey, ResourceKey] | None = None) -> dict[ResourceKey, bytes]:
    """A digest of each record's row as read (``RecordRows.row_digests``): equal digests are the same record.
    ``keys`` maps each key to the equal object the trace holds, which a pickle then writes once."""
    digests = rows.row_digests()
    return digests if keys is None else {keys.get(key, key): digest for key, digest in digests.items()}


def _moved_rows(
    kept: _Entry, versions: Versions, store: Store, rows: RecordRows | None
) -> frozenset[ResourceKey] | None:
    """The records whose rows are not those ``kept`` was made from (``rows``, every row read at ``versions``, or
    read now); None when a record was added or removed, the entry holds no digests, or a write came while they were
    read (``versions`` are the counters the caller read before its records, and still the same after them)."""
    if kept.rows is None:
        return None
    now, before = _row_digests(rows if rows is not None else store.record_rows()), kept.rows.get()
    if now.keys() != before.keys() or store.change_versions() != versions:
        return None
    return frozenset(key for key, digest in now.items() if before[key] != digest)


def _hidden(
    key: ResourceKey,
    spec: Mapping[str, Any] | None,
    observed: Mapping[str, Any] | None,
    outcome: Outcome,
    document: AnyManifest | None,
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """``spec`` and ``observed`` with each secret in clear replaced by ``FROM_MANIFEST``; None when the resource's
    plan holds a secret elsewhere (a change or drift, which would show or compare it; a deletion) or one that is not
    the manifest's value."""
    if document is None or spec is None:
        return None
    change, drift, _ = outcome
    if drift or (change is not None and (change.is_change or change.drift)):
        return None

    def hide(path: tuple[str, ...], value: object) -> object:
        if not isinstance(value, str) or is_sealed(value):
            return value  # a digest: no secret
        if value != _in_manifest(document, path):
            raise _NotTheManifestsError
        return FROM_MANIFEST

    try:
        return map_secrets(key.kind, spec, hide), map_secrets(key.kind, observed, hide) if observed else None
    except _NotTheManifestsError:
        return None


def _in_manifest(document: AnyManifest, path: tuple[str, ...]) -> str | None:
    """The manifest's value in clear at ``path`` of its spec (``schemas.models.spec_document``'s), without
    dumping the whole spec; None when there is none."""
    node: object = document.spec
    for part in path:
        if isinstance(node, BaseModel):
            node = getattr(node, part, None)
        elif isinstance(node, Mapping):
            node = node.get(part)
        else:
            return None
    if isinstance(node, SecretStr):
        return node.get_secret_value()
    return node if isinstance(node, str) else None
