"""Statements run on the driver's cursor (``database.direct``) and the connection an apply's journal keeps
(``Store.keeping_connection``): they write exactly what SQLAlchemy writes, fail as it fails, and keep every
transaction whole."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, exc, insert, update

from nebctl.core.keys import Kind
from nebctl.database import ActionRecord, DatabaseError, EventRecord, ResourceRecord, Store, direct, engines
from nebctl.database.leasing import Fenced
from nebctl.database.models import ApplyAction, ChangeCounter
from nebctl.database.operating import Fence
from nebctl.database.state import _APPEND_EVENTS, _UPDATE_ACTIONS, _listing
from tests.support.sqlite_files import another_writer

VM = Kind.VIRTUAL_MACHINE
WHEN = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _event_rows() -> list[dict[str, object]]:
    return [
        {
            "time": WHEN,
            "type": "action.succeeded",
            "severity": "info",
            "kind": "VirtualMachine",
            "namespace": "default",
            "name": f"web-{i}",
            "stack": None,
            "message": "deploy 'web' ✓",
            "data": {"action": f"a{i}", "nested": [1, 2.5, None, True], "text": "ünïcødé"},
        }
        for i in range(3)
    ]


def _raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows as SQLite stores them, read without SQLAlchemy."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def test_rows_written_directly_are_stored_as_sqlalchemy_stores_them(tmp_path: Path) -> None:
    paths = {way: tmp_path / f"{way}.db" for way in ("sqlalchemy", "direct")}
    for way, path in paths.items():
        Store.open(f"sqlite:///{path}").close()  # the schema
        engine = create_engine(f"sqlite:///{path}")
        with engine.begin() as connection:
            if way == "sqlalchemy":
                connection.execute(_APPEND_EVENTS, _event_rows())
            else:
                assert direct.execute(connection, _APPEND_EVENTS, _event_rows()) == 3
        engine.dispose()
    columns = "time, type, severity, kind, namespace, name, stack, message, data"
    stored = {way: _raw(path, f"SELECT {columns} FROM events ORDER BY id") for way, path in paths.items()}
    assert stored["direct"] == stored["sqlalchemy"]
    # What SQLAlchemy writes, spelled out: naive UTC text with microseconds, and JSON text.
    assert stored["direct"][0][0] == "2024-05-01 12:00:00.123456"
    assert '"nested": [1, 2.5, null, true]' in str(stored["direct"][0][8])


def test_an_update_with_parameters_of_its_own_and_coalesced_values(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}")
    apply_id = store.begin_apply(stack="web", revision=None, plan={}, holder="t")
    store.journal_actions(apply_id, [ActionRecord("a", VM, "default", "x", "virtualization", "deploy")])
    engine = create_engine(f"sqlite:///{tmp_path / 'nebctl.db'}")
    change = {
        "match_apply": apply_id,
        "match_action": "a",
        "new_state": "running",
        "new_attempts": 1,
        "new_error": None,
        "new_result": {"progress": {"done": 5}},
        "new_started_at": WHEN,
        "new_finished_at": None,
        "new_term": None,
    }
    with engine.begin() as connection:
        assert direct.execute(connection, _UPDATE_ACTIONS, [change]) == 1
        # A second change leaves what it does not set (None) as it was: the coalesce of the statement.
        later = {**change, "new_state": "succeeded", "new_result": None, "new_started_at": None}
        assert direct.execute(connection, _UPDATE_ACTIONS, [later]) == 1
        # ``value + 1``: the 1 is the statement's own parameter, not the row's.
        raise_counter = update(ChangeCounter).where(ChangeCounter.c.name == "resources")
        raise_counter = raise_counter.values(value=ChangeCounter.c.value + 1)
        before = store.change_versions().resources
        assert direct.execute(connection, raise_counter, [{}]) == 1
    engine.dispose()
    (entry,) = store.actions_of(apply_id)
    assert (entry.state, entry.attempts, entry.result, entry.started_at) == (
        "succeeded",
        1,
        {"progress": {"done": 5}},
        WHEN,
    )
    assert store.change_versions().resources == before + 1
    store.close()


def test_driver_errors_come_out_as_sqlalchemys(tmp_path: Path) -> None:
    Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}").close()
    engine = create_engine(f"sqlite:///{tmp_path / 'nebctl.db'}")
    with engine.connect() as connection:
        with pytest.raises(exc.IntegrityError, match="NOT NULL"), connection.begin():
            direct.execute(connection, _APPEND_EVENTS, [{**_event_rows()[0], "type": None}])
        with connection.begin():  # the failed transaction left the connection usable
            assert direct.execute(connection, _APPEND_EVENTS, _event_rows()[:1]) == 1
    engine.dispose()


def test_a_statement_that_needs_sqlalchemys_execution_is_refused(tmp_path: Path) -> None:
    """An insert that leaves out a column SQLAlchemy fills in with its Python default (``attempts``)."""
    Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}").close()
    engine = create_engine(f"sqlite:///{tmp_path / 'nebctl.db'}")
    row = {
        "apply_id": 1,
        "action_id": "a",
        "kind": "VirtualMachine",
        "namespace": "default",
        "name": "x",
        "family": "virtualization",
        "operation": "deploy",
        "state": "pending",
    }
    with engine.begin() as connection, pytest.raises(ValueError, match="computed default"):
        direct.execute(connection, insert(ApplyAction), [row])
    engine.dispose()
    assert _raw(tmp_path / "nebctl.db", "SELECT count(*) FROM apply_actions") == [(0,)]


def test_the_kept_connection_serves_every_transaction_and_keeps_each_whole(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}")
    checkouts: list[object] = []
    event.listen(store._engine, "checkout", lambda dbapi, record, proxy: checkouts.append(dbapi))
    with store.keeping_connection() as kept:
        for i in range(5):
            with kept.batch() as tx:
                tx.save_resource(ResourceRecord(VM, "default", f"web-{i}", "web", status="creating"))
                tx.add_event(EventRecord(type="test", message=f"round {i}"))
            # Committed at the end of its block: another connection sees it at once.
            assert store.get_resource(ResourceRecord(VM, "default", f"web-{i}", "web").key) is not None
        with pytest.raises(RuntimeError), kept.batch() as tx:
            tx.add_event(EventRecord(type="test", message="rolled back"))
            raise RuntimeError("the round fails midway")
        with kept.batch() as tx:
            tx.add_event(EventRecord(type="test", message="after the failure"))
    messages = [e.message for e in store.list_events(limit=20) if e.type == "test"]
    assert messages == [*(f"round {i}" for i in range(5)), "after the failure"]
    # One checkout for the six kept transactions; the store's own reads check out as usual.
    kept_checkouts = len(checkouts) - 5 - 1  # get_resource five times, list_events once
    assert kept_checkouts == 1
    store.close()


def test_the_kept_connection_still_checks_the_fence(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}")
    lease = store.acquire_lease("serve/s", "a", 30)
    assert lease is not None
    leader = store.fenced(Fence("serve/s", "a", lease.term))
    with leader.keeping_connection() as kept:
        kept.add_event(EventRecord(type="test", message="while leading"))
        store.release_lease("serve/s", "a", lease.term)
        assert store.acquire_lease("serve/s", "b", 30) is not None
        with pytest.raises(Fenced), kept.batch() as tx:
            tx.add_event(EventRecord(type="test", message="after losing the lease"))
    assert [e.message for e in store.list_events(limit=10) if e.type == "test"] == ["while leading"]
    store.close()


def test_a_busy_database_is_a_database_error_on_the_kept_connection(tmp_path: Path) -> None:
    path = tmp_path / "nebctl.db"
    store = Store.open(f"sqlite:///{path}", timeouts=engines.Timeouts(busy=0.05))
    other = sqlite3.connect(path, isolation_level=None)
    with store.keeping_connection() as kept:
        other.execute("BEGIN IMMEDIATE")  # another process writing
        with pytest.raises(DatabaseError, match="locked"):
            kept.add_event(EventRecord(type="test", message="waits, then gives up"))
        other.execute("ROLLBACK")
        kept.add_event(EventRecord(type="test", message="once the writer is done"))
    other.close()
    assert [e.message for e in store.list_events(limit=10) if e.type == "test"] == ["once the writer is done"]
    store.close()


def test_the_server_backends_keep_their_pool(db_url: str) -> None:
    store = Store.open(db_url)
    with store.keeping_connection() as kept:
        assert (kept is store) == (store.backend != "sqlite")
        kept.add_event(EventRecord(type="test", message="written"))
    assert [e.message for e in store.list_events(limit=5) if e.type == "test"] == ["written"]
    store.close()


def test_the_bulk_writers_read_back_as_given_on_every_backend(db_url: str) -> None:
    """The journal's bulk writers go through ``direct.execute`` on every backend (SQLAlchemy's own path on the
    servers): what they wrote reads back as given."""
    store = Store.open(db_url)
    data = [{"action": f"a{i}", "nested": [1, 2.5, None, True], "text": "ünïcødé"} for i in range(3)]
    with store.batch() as tx:
        tx.append_events([EventRecord(type="t", message=f"m{i}", data=item) for i, item in enumerate(data)])
        tx.save_resources([ResourceRecord(VM, "default", "web", "web", live={"uuid": "u"}, status="ready")])
    assert [e.data for e in store.list_events(limit=10) if e.type == "t"] == data
    record = store.get_resource(ResourceRecord(VM, "default", "web", "web").key)
    assert record is not None and (record.live, record.status) == ({"uuid": "u"}, "ready")
    store.close()


def test_rows_read_directly_are_those_sqlalchemy_reads_on_every_backend(db_url: str) -> None:
    store = Store.open(db_url, clock=lambda: WHEN)
    desired = {"vcpu": 2, "labels": {"tier": "wéb"}, "disks": [{"size": 10.5, "image": None}]}
    store.save_resources(
        [
            ResourceRecord(VM, "default", "web", "s", desired=desired, desired_hash="d" * 64, status="ready"),
            ResourceRecord(VM, "other", "db", "s", live={"uuid": "u", "ip": ["10.0.0.2"]}, host="h1", status="ready"),
            ResourceRecord(Kind.HOST, "default", "h1", "t", generation=3, status="ready"),
        ]
    )
    query = _listing(True, False, False)
    with store._read() as connection:
        read = direct.rows(connection, query, {"stack": "s"})
        expected = [tuple(row) for row in connection.execute(query, {"stack": "s"})]
    assert read == expected
    assert [(row[1], row[2]) for row in read] == [("default", "web"), ("other", "db")]
    web, db = store.list_resources(stack="s")
    # As written, times as aware UTC: independent of how either path reads them.
    assert (web.desired, web.desired_hash, web.applied, web.live) == (desired, "d" * 64, None, {})
    assert (db.live, db.host, db.created_at, db.updated_at) == ({"uuid": "u", "ip": ["10.0.0.2"]}, "h1", WHEN, WHEN)
    assert [r.name for r in store.list_resources(kind=Kind.HOST)] == ["h1"]
    assert [r.name for r in store.list_resources(namespace="other")] == ["db"]
    assert [r.name for r in store.list_resources(stack="s", kind=VM, namespace="default")] == ["web"]
    assert [r.name for r in store.list_resources()] == ["h1", "web", "db"]  # by kind, namespace, name
    store.close()


def test_a_new_database_file_another_process_is_writing_is_waited_for(tmp_path: Path) -> None:
    """Switching a new SQLite file to WAL needs its exclusive lock, and SQLite answers "database is locked" at once,
    past any busy timeout, while another connection writes to the file in rollback mode (two nebctl processes
    making a new database at once): the engine waits for it instead."""
    path = tmp_path / "nebctl.db"
    with another_writer(path):
        store = Store.open(f"sqlite:///{path}")
    try:
        assert store.count_resources() == 0
    finally:
        store.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
