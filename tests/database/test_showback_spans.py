"""Showback's one-pass path (``Store.history_spans`` then ``pricing.price_spans``) against the simpler model it
replaces (``list_history``, ``usage.clip``, ``pricing.price_month``), on SQLite, PostgreSQL and MariaDB: the
same rows to the last bit, for crafted and random histories; and ``bills`` against plain sums per group."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from nebctl.accounting.pricing import PriceBook, bills, price_month, price_spans, showback_key
from nebctl.accounting.usage import GROUPINGS, clip, month_period
from nebctl.database import Store
from tests.database.test_accounting import BOOK, store_histories, write_history
from tests.unit.accounting.test_properties import BOOK as PROPERTY_BOOK
from tests.unit.accounting.test_properties import LABELS as PROPERTY_LABELS
from tests.unit.accounting.test_properties import MONTHS, NOW, build, vm_history


def reference(store: Store, month: str, book, labels, now: datetime):  # type: ignore[no-untyped-def]
    period = month_period(month)
    return price_month(
        month, clip(store.list_history(start=period.start, end=period.end), period, now=now), book, labels
    )


def spans_rows(store: Store, month: str, book, labels, now: datetime):  # type: ignore[no-untyped-def]
    period = month_period(month)
    return price_spans(month, store.history_spans(start=period.start, end=period.end), book, labels, now=now)


@pytest.mark.parametrize("month", ["2024-04", "2024-05", "2024-06"])
def test_crafted_history_prices_the_same(store: Store, month: str) -> None:
    write_history(store)
    now = datetime(2024, 5, 20, 6, 30, 0, 250, tzinfo=UTC)  # some records still open: counted to now
    rows = spans_rows(store, month, BOOK, {}, now)
    assert rows == reference(store, month, BOOK, {}, now)


def test_cloud_records_price_the_same_per_instance_hour(store: Store) -> None:
    from tests.unit.accounting.test_instance_hours import HISTORY, INSTANCE_HOUR, PRICES, REGIONS

    store_histories(store, HISTORY)
    book = PriceBook(base=PRICES, instance_hour=INSTANCE_HOUR, only_running=True)
    now = datetime(2024, 6, 10, tzinfo=UTC)
    rows = price_spans("2024-05", store.history_spans(start=t0, end=t1), book, {}, REGIONS, now=now)
    period = month_period("2024-05")
    expected = price_month("2024-05", clip(store.list_history(start=t0, end=t1), period, now=now), book, {}, REGIONS)
    assert rows == expected
    assert {row.name: row.instance_type for row in rows} == {
        "web-1": "t3.small",
        "web-2": "t3.large",
        "web-3": None,
        "db-1": None,
    }


t0, t1 = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(vm_history, min_size=1, max_size=4))
def test_random_histories_price_the_same(store: Store, histories) -> None:  # type: ignore[no-untyped-def]
    with store.batch() as tx, tx._write() as connection:
        connection.execute(text("DELETE FROM accounting_history"))
    store_histories(store, build(histories))
    for month in MONTHS:
        rows = spans_rows(store, month, PROPERTY_BOOK, PROPERTY_LABELS, NOW)
        assert rows == reference(store, month, PROPERTY_BOOK, PROPERTY_LABELS, NOW)
        for by in GROUPINGS:
            expected = {}
            for group in sorted({showback_key(row, by) for row in rows}):
                members = [row for row in rows if showback_key(row, by) == group]
                expected[group] = (sum(r.running_hours for r in members), sum(r.cost for r in members))
            assert {b.key: (b.running_hours, b.cost) for b in bills(rows, by)} == expected
            assert [b.key for b in bills(rows, by)] == list(expected)


def test_bills_names_the_choices_for_an_unknown_grouping() -> None:
    with pytest.raises(ValueError, match="--by 'rack': expected one of vm, host"):
        bills([], "rack")
