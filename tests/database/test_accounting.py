"""Placement records, showback records and samples through the store, on SQLite, PostgreSQL and MariaDB.

The histories are written as the executor writes them (``open_history`` closes the open record and starts the
next), at chosen times; the hours and costs expected are worked out by hand in the comments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from nebctl.accounting.pricing import PriceBook, PriceOverride, Prices, bills, price_month
from nebctl.accounting.usage import GROUPINGS, clip, month_period
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import HostSampleRecord, Store, VMSampleRecord, engines, migrating
from nebctl.database.engines import transaction
from nebctl.database.records import HistoryRecord
from tests.unit.accounting.test_properties import BOOK as PROPERTY_BOOK
from tests.unit.accounting.test_properties import LABELS as PROPERTY_LABELS
from tests.unit.accounting.test_properties import MONTHS, NOW, build, vm_history

GIB = 1 << 30
BOOK = PriceBook(Prices(0.02, 0.01, 0.001), (PriceOverride(host="kvm2", vcpu_hour=0.05),), currency="CHF")


def t(day: int, hour: int = 0, month: int = 5) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


def store_histories(store: Store, records: Iterable[HistoryRecord]) -> None:
    """Opens (and, where they ended, closes) the placement records ``records`` through the store."""
    for record in records:
        key = ResourceKey.of(Kind.VIRTUAL_MACHINE, record.name, record.namespace)
        store.open_history(
            key,
            host=record.host,
            vcpu=record.vcpu,
            memory=record.memory,
            disk=record.disk,
            reason=record.reason,
            stack=record.stack,
            start=record.started_at,
            state=record.state,
            owner=record.owner,
            instance_type=record.instance_type,
        )
        if record.ended_at is not None:
            store.close_history(key, reason="deleted", end=record.ended_at)


def write_history(store: Store) -> None:
    web = ResourceKey.of(Kind.VIRTUAL_MACHINE, "web")
    db = ResourceKey.of(Kind.VIRTUAL_MACHINE, "db", "data")
    memory, disk = 2 * GIB, 10 * GIB
    # web: 2 vCPU on kvm1 from May 1st 00:00, migrated to kvm2 at 02:00, resized to 4 vCPU on May 2nd 00:00,
    # stopped May 3rd 00:00, started May 10th 00:00, deleted May 10th 12:00.
    store.open_history(
        web, host="kvm1", vcpu=2, reason="created", stack="shop", owner="alice", start=t(1), memory=memory, disk=disk
    )
    store.open_history(
        web,
        host="kvm2",
        vcpu=2,
        reason="migrated",
        stack="shop",
        owner="alice",
        start=t(1, 2),
        memory=memory,
        disk=disk,
    )
    store.open_history(
        web, host="kvm2", vcpu=4, reason="resized", stack="shop", owner="alice", start=t(2), memory=memory, disk=disk
    )
    store.open_history(
        web,
        host="kvm2",
        vcpu=4,
        reason="stopped",
        state="stopped",
        stack="shop",
        owner="alice",
        start=t(3),
        memory=memory,
        disk=disk,
    )
    store.open_history(
        web, host="kvm2", vcpu=4, reason="started", stack="shop", owner="bob", start=t(10), memory=memory, disk=disk
    )
    assert store.close_history(web, reason="deleted", end=t(10, 12)) == 1
    # db: created on April 30th 18:00 on kvm1, still running.
    store.open_history(db, host="kvm1", vcpu=1, memory=GIB, disk=0, reason="created", stack="data", start=t(30, 18, 4))


def test_history_records_keep_state_owner_and_reasons(store: Store) -> None:
    write_history(store)
    web = [r for r in store.list_history() if r.name == "web"]
    assert [(r.host, r.vcpu, r.state, r.reason, r.end_reason, r.owner) for r in web] == [
        ("kvm1", 2, "running", "created", "migrated", "alice"),
        ("kvm2", 2, "running", "migrated", "resized", "alice"),
        ("kvm2", 4, "running", "resized", "stopped", "alice"),
        ("kvm2", 4, "stopped", "stopped", "started", "alice"),
        ("kvm2", 4, "running", "started", "deleted", "bob"),
    ]
    assert [r.started_at for r in web[1:]] == [r.ended_at for r in web[:-1]], "records follow each other"


def test_showback_of_a_month_stored_and_replaced(store: Store) -> None:
    write_history(store)
    now = t(20)  # May 20th 00:00: db has run 19 days (456 h) of May so far
    period = month_period("2024-05")
    rows = price_month(
        "2024-05", clip(store.list_history(start=period.start, end=period.end), period, now=now), BOOK, {}
    )
    store.replace_showback("2024-05", rows)
    stored = store.list_showback("2024-05")
    assert [r._replace(computed_at=None) for r in stored] == [r._replace(computed_at=None) for r in rows]
    assert all(r.computed_at is not None and r.currency == "CHF" for r in stored)
    costs = {(r.namespace, r.name, r.host, r.owner): r for r in stored}
    # web on kvm1: 2 h x (2*0.02 + 2*0.01 + 10*0.001) = 2 * 0.07
    assert costs[("default", "web", "kvm1", "alice")].cost == pytest.approx(0.14)
    # web on kvm2 by alice: 22 h at 2 vCPU, 24 h at 4 vCPU, 168 h stopped at 4 vCPU; vCPU at 0.05 on kvm2:
    # vCPU-h 44 + 96 + 672 = 812 -> 40.6; memory 214 h * 2 GiB * 0.01 = 4.28; disk 214 h * 10 GiB * 0.001 = 2.14
    alice = costs[("default", "web", "kvm2", "alice")]
    assert alice.running_hours == pytest.approx(46)
    assert alice.stopped_hours == pytest.approx(168)
    assert alice.cost == pytest.approx(40.6 + 4.28 + 2.14)
    # web on kvm2 by bob: 12 h at 4 vCPU: 48 * 0.05 + 24 * 0.01 + 120 * 0.001
    assert costs[("default", "web", "kvm2", "bob")].cost == pytest.approx(2.4 + 0.24 + 0.12)
    # db: 456 h x (0.02 + 0.01)
    assert costs[("data", "db", "kvm1", None)].cost == pytest.approx(456 * 0.03)
    by_namespace = {b.key: b.cost for b in bills(stored, "namespace")}
    assert by_namespace == pytest.approx({"default": 0.14 + 47.02 + 2.76, "data": 13.68})
    # Recomputed later: the month's rows are replaced, not added to.
    later = price_month(
        "2024-05", clip(store.list_history(start=period.start, end=period.end), period, now=t(1, 0, 6)), BOOK, {}
    )
    store.replace_showback("2024-05", later)
    again = store.list_showback("2024-05")
    assert len(again) == len(rows)
    assert {(r.name, r.host, r.owner): r.cost for r in again}[("db", "kvm1", None)] == pytest.approx(
        744 * 0.03
    )  # all of May
    assert store.list_showback("2024-04") == []
    with pytest.raises(ValueError, match="rows of another month"):
        store.replace_showback("2024-04", later)


def test_april_sees_only_the_records_that_overlap_it(store: Store) -> None:
    write_history(store)
    period = month_period("2024-04")
    usages = clip(store.list_history(start=period.start, end=period.end), period, now=t(20))
    assert [(u.name, u.hours) for u in usages] == [("db", 6.0)]


def test_samples_of_one_observation_in_one_write(store: Store) -> None:
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)
    host = HostSampleRecord(
        host="kvm1",
        time=at,
        state="online",
        cpu_total=8,
        cpu_load=0.25,
        memory_total=8 * GIB,
        memory_used=GIB,
        disk_total=100 * GIB,
        disk_used=GIB,
        attributes={"rack": "r1"},
    )
    vms = [
        VMSampleRecord(
            namespace="default",
            name=f"vm-{i}",
            host="kvm1",
            time=at + timedelta(seconds=s),
            state="running",
            cpu=10.0 * i,
            memory_used=GIB,
            net_rx_bytes=1000 * s,
        )
        for i in range(3)
        for s in (0, 10)
    ]
    store.add_samples([host], vms)
    assert store.latest_host_samples()["kvm1"].attributes == {"rack": "r1"}
    recent = store.recent_vm_samples(at + timedelta(seconds=5))
    assert sorted((s.name, s.net_rx_bytes) for s in recent) == [("vm-0", 10000), ("vm-1", 10000), ("vm-2", 10000)]
    assert len(store.recent_vm_samples(at)) == 6
    # A third observation: only the two newest of each VM come back, oldest first.
    store.add_samples([], [replace(vm, time=at + timedelta(seconds=20), net_rx_bytes=20000) for vm in vms[1::2]])
    newest = store.recent_vm_samples(at)
    assert [(s.name, s.net_rx_bytes) for s in newest if s.name == "vm-1"] == [("vm-1", 10000), ("vm-1", 20000)]
    assert len(newest) == 6 and newest == sorted(newest, key=lambda s: s.time)
    assert [s.name for s in store.recent_vm_samples(at, per_vm=1)] == ["vm-0", "vm-1", "vm-2"]


def test_upgrade_keeps_existing_records_as_running(db_url: str) -> None:
    """A database of revision 0001 with placement records: after `db upgrade`, they are running, ownerless."""
    engine = engines.create(db_url)
    try:
        migrating.upgrade(engine, "0001")
        with transaction(engine, write=True) as connection:
            connection.execute(
                text(
                    "INSERT INTO accounting_history (namespace, name, stack, host, started_at, vcpu, memory, disk,"
                    " reason) VALUES ('default', 'old', 'shop', 'kvm1', '2024-05-01 00:00:00', 2, 1024, 0, 'deploy')"
                )
            )
        assert migrating.upgrade(engine) == ("0001", migrating.HEAD)
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        [record] = store.list_history()
        assert (record.name, record.state, record.owner, record.reason) == ("old", "running", None, "deploy")
        assert store.list_showback("2024-05") == []


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(vm_history, min_size=1, max_size=4))
def test_random_histories_through_the_store(store: Store, histories) -> None:  # type: ignore[no-untyped-def]
    """The properties of tests/unit/accounting/test_properties.py on every backend: random histories written as
    the executor writes them come back to the microsecond, and price to the same figures, which the showback
    table keeps exactly; the groupings sum to the per-VM total."""
    with store.batch() as tx, tx._write() as connection:  # a fresh history for each example
        connection.execute(text("DELETE FROM accounting_history"))
        connection.execute(text("DELETE FROM showback"))
    expected = build(histories)
    store_histories(store, expected)
    stored = store.list_history()
    assert sorted((r.name, r.started_at, r.ended_at, r.host, r.state, r.owner) for r in stored) == sorted(
        (r.name, r.started_at, r.ended_at, r.host, r.state, r.owner) for r in expected
    )
    for month in MONTHS:
        period = month_period(month)
        rows = price_month(
            month,
            clip(store.list_history(start=period.start, end=period.end), period, now=NOW),
            PROPERTY_BOOK,
            PROPERTY_LABELS,
        )
        assert rows == price_month(month, clip(expected, period, now=NOW), PROPERTY_BOOK, PROPERTY_LABELS)
        store.replace_showback(month, rows)
        kept = store.list_showback(month)
        assert [r._replace(computed_at=None) for r in kept] == rows
        total = sum(r.cost for r in kept)
        for by in GROUPINGS:
            assert sum(b.cost for b in bills(kept, by)) == pytest.approx(total, rel=1e-9, abs=1e-9)
