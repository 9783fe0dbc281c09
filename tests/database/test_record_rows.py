"""``Store.record_rows`` (``database.record_rows.RecordRows``): every record ``list_resources`` lists, by key and in
its order, on every backend; each decoded only when read, and the stack and whether the specs may hold a secret
told without decoding; and ``sealing.stored_may_hold_secrets`` never says no where a stored spec holds a secret."""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import ResourceRecord, Store, record_rows
from nebctl.database.sealing import secret_values, stored_may_hold_secrets
from tests.support.decoding import decoded_records

VM = Kind.VIRTUAL_MACHINE
WHEN = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
CLOUD_INIT = {"userData": "sealed:v1:abc:def", "metaData": None, "networkConfig": None}


def _records() -> list[ResourceRecord]:
    return [
        ResourceRecord(VM, "default", "web", "s", desired={"vcpu": 2, "cloudInit": None}, status="ready"),
        ResourceRecord(VM, "default", "init", "s", applied={"vcpu": 1, "cloudInit": CLOUD_INIT}, status="ready"),
        ResourceRecord(VM, "other", "db", "t", live={"uuid": "u"}, host="h1", status="ready"),
        ResourceRecord(Kind.HOST, "default", "h1", "s", applied={"uri": "sim://h1", "env": {"A": "b"}}, generation=3),
        ResourceRecord(Kind.HOOK, "default", "notify", "s", desired={"env": {"TOKEN": "x"}}),
    ]


def test_record_rows_are_the_records_listed_on_every_backend(db_url: str) -> None:
    store = Store.open(db_url, clock=lambda: WHEN)
    try:
        store.save_resources(_records())
        listed = store.list_resources()
        rows = store.record_rows()
        assert list(rows) == [record.key for record in listed]
        assert list(rows.values()) == listed
        assert list(rows.of_stack("s").values()) == [record for record in listed if record.stack == "s"]
        # Only the VM whose specs hold cloud-init data and the hook with an environment may hold a secret; a host's
        # "env" is not where a host keeps one.
        assert {key.name for key in rows if rows.may_hold_secrets(key)} == {"init", "notify"}
    finally:
        store.close()


def test_a_record_is_decoded_only_when_read_and_then_kept(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}", clock=lambda: WHEN)
    try:
        store.save_resources(_records())
        decoded = decoded_records(monkeypatch)
        rows = store.record_rows()
        own = rows.of_stack("s")
        assert len(own) == 4 and {key.name for key in rows if rows.may_hold_secrets(key)} == {"init", "notify"}
        assert decoded == []  # keys, stacks and the secrets' test read no record
        web = next(key for key in own if key.name == "web")
        assert own[web] is rows[web] and own[web].desired == {"vcpu": 2, "cloudInit": None}
        assert decoded == ["web"]
        revealed = ResourceRecord(VM, "default", "web", "s", desired={"vcpu": 3})
        replaced = rows.with_records({web: revealed})
        assert replaced[web] is revealed and replaced.of_stack("s")[web] is revealed and rows[web] is not revealed
    finally:
        store.close()


def test_views_read_a_records_stack_applied_spec_status_live_state_and_host_from_its_row(db_url: str) -> None:
    store = Store.open(db_url, clock=lambda: WHEN)
    try:
        store.save_resources(_records())
        listed = {record.key: record for record in store.list_resources()}
        rows = store.record_rows()
        web = next(key for key in rows if key.name == "web")
        decoded = rows[web]  # decoded already: its view is the record
        views = rows.views()
        assert list(views) == list(listed) and views[web] is decoded
        for key, view in views.items():
            record = listed[key]
            assert (view.stack, view.applied, view.status, view.live, view.host) == (
                record.stack,
                record.applied,
                record.status,
                record.live,
                record.host,
            )
    finally:
        store.close()


def test_a_rows_digest_moves_with_each_column_and_each_write_on_every_backend(db_url: str) -> None:
    now = [WHEN]
    store = Store.open(db_url, clock=lambda: now[0])
    try:
        store.save_resources(_records())
        rows = store.record_rows()
        first = rows.row_digests()
        assert list(first) == list(rows) and len(set(first.values())) == len(first)
        assert store.record_rows().row_digests() == first  # the same rows read again
        assert rows.of_stack("t").row_digests() == {key: first[key] for key in rows if rows[key].stack == "t"}
        web, init, db, host, hook = _records()
        # One column changed in each record; the times left as they were.
        store.save_resources(
            [
                dataclasses.replace(web, status="failed"),
                dataclasses.replace(init, applied={"vcpu": 2, "cloudInit": CLOUD_INIT}),
                dataclasses.replace(db, live={"uuid": "v"}),
                dataclasses.replace(host, host="h2"),
                dataclasses.replace(hook, desired={"env": {"TOKEN": "y"}}),
            ]
        )
        moved = store.record_rows().row_digests()
        assert {key for key in first if moved[key] != first[key]} == {r.key for r in _records()}
        # Written back and forth to what it held: its time tells it apart.
        store.save_resources([dataclasses.replace(db, live={"uuid": "u"})])
        now[0] = WHEN.replace(second=5)
        store.save_resources([dataclasses.replace(db, live={"uuid": "v"})])
        again = store.record_rows().row_digests()
        assert again[db.key] != moved[db.key] and again[web.key] == moved[web.key]
    finally:
        store.close()


def test_a_view_decodes_only_the_columns_read_and_each_once(monkeypatch: pytest.MonkeyPatch) -> None:
    processed: list[str] = []

    def processor(column: str) -> Any:
        def process(value: Any) -> Any:
            processed.append(column)
            return None if value is None else json.loads(value)

        return process

    json_columns = {"desired", "applied", "live"}
    processors = [processor(name) if name in json_columns else None for name in record_rows.RECORD_COLUMNS]
    row = ["VirtualMachine", "default", "web", "s", '{"vcpu": 4}', "d", '{"vcpu": 2}', "a", 1, "ready"]
    row += ['{"uuid": "u"}', "h1", "2024-05-01", "2024-05-02"]
    rows = record_rows.RecordRows.of([row], processors)
    decoded = decoded_records(monkeypatch)
    [view] = rows.views().values()
    assert (view.stack, view.status, view.host) == ("s", "ready", "h1") and processed == []
    assert view.applied == {"vcpu": 2} and view.applied == {"vcpu": 2} and view.live == {"uuid": "u"}
    assert processed == ["applied", "live"] and decoded == []  # no record built, the desired spec never decoded
    empty = record_rows.RecordRows.of([[*row[:10], None, None, *row[12:]]], processors)
    [bare] = empty.views().values()
    assert bare.live == {} and bare.host is None


SECRET_KINDS = st.sampled_from([VM, Kind.HOOK])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
NAMES = st.sampled_from(["cloudInit", "env", "userData", "TOKEN", "labels", "cloud", "é"])
VALUES = st.recursive(SCALARS, lambda inner: st.dictionaries(NAMES, inner, max_size=3), max_leaves=8)
SPECS = st.dictionaries(NAMES, VALUES, max_size=4)


@given(kind=SECRET_KINDS, spec=SPECS, ascii_only=st.booleans(), compact=st.booleans())
def test_a_spec_holding_a_secret_is_never_told_apart_by_its_text(
    kind: Kind, spec: dict[str, Any], ascii_only: bool, compact: bool
) -> None:
    """Whatever a stored spec holds, and however its JSON is spelled (escaped or not, spaced or not): where the
    decoded spec has a value at a secret path, its text may hold a secret."""
    text = json.dumps(spec, ensure_ascii=ascii_only, separators=(",", ":") if compact else None)
    if secret_values(kind, json.loads(text)):
        assert stored_may_hold_secrets(kind, text)


def test_a_spec_without_a_secret_is_told_apart_by_its_text() -> None:
    assert not stored_may_hold_secrets(VM, json.dumps({"vcpu": 1, "cloudInit": None}))
    assert not stored_may_hold_secrets(VM, json.dumps({"labels": {"cloudInit": "x"}}))
    assert not stored_may_hold_secrets(Kind.NETWORK, json.dumps({"cloudInit": CLOUD_INIT}))
    assert not stored_may_hold_secrets(VM, None)
    assert stored_may_hold_secrets(VM, json.dumps({"cloudInit": CLOUD_INIT}))
    # Decoded by the driver (the server databases): looked into.
    assert not stored_may_hold_secrets(VM, {"cloudInit": None})
    assert stored_may_hold_secrets(VM, {"cloudInit": CLOUD_INIT})


def test_a_records_summary_is_its_stack_applied_digest_and_status_on_every_backend(db_url: str) -> None:
    store = Store.open(db_url, clock=lambda: WHEN)
    try:
        hashed = ResourceRecord(VM, "default", "hashed", "s", applied={"vcpu": 1}, applied_hash="a" * 64)
        store.save_resources([*_records(), hashed])
        rows = store.record_rows()
        summaries = {key: rows.summary(key) for key in rows}
        assert summaries == {r.key: (r.stack, r.applied_hash, r.status) for r in store.list_resources()}
        assert summaries[hashed.key] == ("s", "a" * 64, "pending")
    finally:
        store.close()


# --- KnownRows: the records of rows known already, each row read when its record is ----------------------------


def test_known_rows_are_the_records_listed_and_read_a_few_rows_at_a_time_on_every_backend(db_url: str) -> None:
    store = Store.open(db_url, clock=lambda: WHEN)
    try:
        store.save_resources(_records())
        listed = store.list_resources()
        known = store.known_rows(store.record_rows().summaries())
        assert list(known) == [record.key for record in listed] and known.read_rows == 0
        # Stacks, summaries and the secrets' test come from what was known: no row read.
        assert {key.name for key in known if known.may_hold_secrets(key)} == {"init", "notify"}
        assert {key: known.summary(key) for key in known} == {
            r.key: (r.stack, r.applied_hash, r.status) for r in listed
        }
        own = known.of_stack("s")
        assert list(own) == [record.key for record in listed if record.stack == "s"] and known.read_rows == 0
        web = next(key for key in own if key.name == "web")
        assert own[web] == next(record for record in listed if record.key == web)
        assert 1 <= known.read_rows <= len(listed)
        assert own[web] is known[web]  # decoded once, shared by the views
        assert list(known.values()) == listed
        assert list(own.values()) == [record for record in listed if record.stack == "s"]
        assert known.get(ResourceRecord(VM, "default", "absent", "s").key) is None
    finally:
        store.close()


def test_a_known_row_that_is_gone_is_told_apart_from_a_key_that_is_not_there(tmp_path: Any) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}", clock=lambda: WHEN)
    try:
        store.save_resources(_records())
        known = store.known_rows(store.record_rows().summaries())
        web = next(key for key in known if key.name == "web")
        store.delete_resource(web)
        with pytest.raises(record_rows.RowsMovedError, match="no longer in the database"):
            known.get(web)  # not None: the records known are not the database's any more
        assert known.get(ResourceRecord(VM, "default", "absent", "s").key) is None
    finally:
        store.close()


class _Rows:
    """Rows in memory, counting the reads: what the reading order is checked against."""

    def __init__(self, count: int) -> None:
        # The columns of ``RECORD_COLUMNS``: key and stack, four specs and digests, generation, status, live...
        rest: tuple[Any, ...] = (None, None, None, None, 1, "ready", {}, None, WHEN, WHEN)
        self.by_key: dict[ResourceKey, tuple[Any, ...]] = {
            ResourceKey(VM, "default", f"vm{n:03d}"): (VM.value, "default", f"vm{n:03d}", "s", *rest)
            for n in range(count)
        }
        self.reads: list[list[str]] = []

    def rows(self, keys: Sequence[ResourceKey]) -> tuple[list[Sequence[Any]], record_rows.Processors]:
        assert len(keys) <= record_rows.ROWS_AT_ONCE
        self.reads.append([key.name for key in keys])
        return [self.by_key[key] for key in keys if key in self.by_key], UNCONVERTED

    def every_row(self) -> tuple[list[Sequence[Any]], record_rows.Processors]:
        self.reads.append(["every row"])
        return list(self.by_key.values()), UNCONVERTED


UNCONVERTED = (None,) * len(record_rows.RECORD_COLUMNS)


def test_known_rows_read_the_next_unread_rows_with_each_and_every_row_past_a_quarter() -> None:
    source = _Rows(1000)
    summaries: dict[ResourceKey, record_rows.RowSummary] = {key: ("s", None, "ready", False) for key in source.by_key}
    known = record_rows.KnownRows(summaries, source)
    keys = list(summaries)
    known[keys[10]]
    assert source.reads == [[f"vm{n:03d}" for n in range(10, 74)]]  # the key and the 63 after it
    known[keys[70]], known[keys[11]]  # read already: no query
    known[keys[5]]
    # From vm005 on, skipping the rows read already.
    assert source.reads[1] == [*(f"vm{n:03d}" for n in range(5, 10)), *(f"vm{n:03d}" for n in range(74, 133))]
    assert known.read_rows == 128
    known[keys[133]]
    assert source.reads[2] == [f"vm{n:03d}" for n in range(133, 197)] and known.read_rows == 192
    known[keys[197]]  # 64 more would pass a quarter of the rows: every row at once
    assert source.reads[3] == ["every row"] and known.read_rows == 1000
    assert [record.name for record in known.values()] == [key.name for key in keys] and len(source.reads) == 4


def test_known_summaries_read_back_are_the_summaries_and_build_the_digests_only_when_asked() -> None:
    summaries: dict[ResourceKey, record_rows.RowSummary] = {
        ResourceKey(VM, "default", "web"): ("s", "a" * 64, "ready", False),
        ResourceKey(VM, "default", "init"): ("s", None, "pending", True),
        ResourceKey(Kind.HOST, "default", "h1"): ("t", "b" * 64, "ready", False),
    }
    read = pickle.loads(pickle.dumps(record_rows.KnownSummaries(summaries)))
    assert list(read) == list(summaries) and len(read) == 3
    assert [read.stack(key) for key in read] == ["s", "s", "t"]
    assert [read.may_hold_secrets(key) for key in read] == [False, True, False]
    assert not read._rest.read  # stacks and the secrets' test: the digests and statuses are not built
    assert dict(read) == summaries and read._rest.read
    own = read.of_stack("s")
    assert list(own) == list(summaries)[:2] and ResourceKey(Kind.HOST, "default", "h1") not in own
    assert dict(pickle.loads(pickle.dumps(own))) == {key: summaries[key] for key in list(summaries)[:2]}
    assert ResourceKey(VM, "default", "absent") not in read and "not a key" not in read
    with pytest.raises(KeyError):
        own[ResourceKey(Kind.HOST, "default", "h1")]


def test_known_summaries_with_rows_written_since_answer_those_rows_summaries() -> None:
    web, init = ResourceKey(VM, "default", "web"), ResourceKey(VM, "default", "init")
    h1 = ResourceKey(Kind.HOST, "default", "h1")
    summaries: dict[ResourceKey, record_rows.RowSummary] = {
        web: ("s", "a" * 64, "ready", False),
        init: ("s", None, "pending", True),
        h1: ("t", "b" * 64, "ready", False),
    }
    read = pickle.loads(pickle.dumps(record_rows.KnownSummaries(summaries)))
    written: dict[ResourceKey, record_rows.RowSummary] = {init: ("s", "c" * 64, "ready", False)}
    changed = read.with_changed(written)
    assert changed is not None and dict(changed) == {**summaries, **written}
    assert list(changed) == list(summaries) and not changed.may_hold_secrets(init) and changed.stack(init) == "s"
    assert dict(read) == summaries  # the summaries it was made from are left as they were
    own = changed.of_stack("s")
    assert dict(own) == {web: summaries[web], init: written[init]} and h1 not in own
    assert dict(pickle.loads(pickle.dumps(changed))) == {**summaries, **written}
    assert read.with_changed({}) is read
    # A row of another key, or one whose stack changed, is not one of these: no view.
    assert read.with_changed({ResourceKey(VM, "default", "absent"): ("s", None, "ready", False)}) is None
    assert read.with_changed({web: ("t", "a" * 64, "ready", False)}) is None


def test_what_a_row_tells_of_secrets_is_searched_for_once_whatever_the_view(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revealing the secrets asks every row, and keeping the plan's trace asks them again (``summaries``)."""
    store = Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}", clock=lambda: WHEN)
    try:
        store.save_resources(_records())
        rows = store.record_rows()
        searched: list[object] = []
        real = stored_may_hold_secrets

        def counted(kind: Kind, stored: object) -> bool:
            searched.append(stored)
            return real(kind, stored)

        monkeypatch.setattr(record_rows, "stored_may_hold_secrets", counted)
        told = {key.name for key in rows if rows.may_hold_secrets(key)}
        assert told == {"init", "notify"} and searched
        searched.clear()
        revealed = rows.with_records({})
        assert {key.name for key, summary in revealed.summaries().items() if summary[3]} == told
        assert {key.name for key in revealed.of_stack("s") if revealed.of_stack("s").may_hold_secrets(key)} == told
        assert searched == []
    finally:
        store.close()


def test_rows_of_keys_and_of_hosts_are_those_every_row_gives(db_url: str) -> None:
    store = Store.open(db_url, clock=lambda: WHEN)
    try:
        hosts = [f"h{index:02d}" for index in range(20)]
        placed = [
            ResourceRecord(VM, "default", f"vm{index}", "s", applied={"vcpu": 1}, host=hosts[index % 20], status="ok")
            for index in range(200)
        ]
        store.save_resources([*_records(), *placed])
        every = store.record_rows()
        # More keys than one query asks for (64), and one that has no record.
        wanted = [record.key for record in placed[::2]] + [ResourceKey(VM, "default", "missing")]
        assert len(wanted) > 64
        found = store.rows_of(wanted)
        assert set(found) == set(wanted[:-1])
        assert {key: found[key] for key in found} == {key: every[key] for key in wanted[:-1]}
        assert found.row_digests() == {key: every.row_digests()[key] for key in found}

        # More hosts than one query asks for (16), and "h1", which is a host's record too.
        asked = [*hosts[:18], "h1"]
        on = store.rows_on_hosts(asked)
        expected = {
            r.key
            for r in [*placed, *_records()]
            if r.host in asked or (r.kind is Kind.HOST and r.name in asked) or (r.kind is VM and r.host is None)
        }
        assert set(on) == expected and ResourceKey(Kind.HOST, "default", "h1") in expected
        assert {key.name for key in on if key.kind is VM and every[key].host is None} == {"web", "init"}  # no host
        assert {key: on[key] for key in on} == {key: every[key] for key in expected}
        assert on.row_digests() == {key: every.row_digests()[key] for key in on}
        assert len(store.rows_on_hosts([])) == 0 and len(store.rows_of([])) == 0
    finally:
        store.close()
