"""Properties of accounting and showback on random histories (hypothesis).

A history is what the store keeps: for each VM, consecutive placement records (each opening when the previous
one closes), on random hosts, sizes and states, the last one possibly still open. Over any months:

- the cost of every ``--by`` grouping sums to the total, which is the sum of the per-VM costs;
- no hour is counted twice: a VM's hours in a period never exceed the period's length, and the hours of
  consecutive months add up to those of the whole span.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nebctl.accounting.pricing import PriceBook, PriceOverride, Prices, bills, price_month
from nebctl.accounting.usage import GROUPINGS, Period, clip, month_period, summarise
from nebctl.database.records import HistoryRecord

START = datetime(2023, 11, 20, tzinfo=UTC)
NOW = datetime(2024, 3, 10, tzinfo=UTC)
MONTHS = ["2023-11", "2023-12", "2024-01", "2024-02", "2024-03"]
HOSTS = ["a", "b", "c"]
LABELS = {"a": {}, "b": {"tier": "gold"}, "c": {"tier": "gold", "zone": "x"}}
BOOK = PriceBook(
    Prices(0.02, 0.01, 0.001),
    (PriceOverride(host="c", vcpu_hour=0.04), PriceOverride(labels={"tier": "gold"}, memory_gib_hour=0.02)),
)

segment = st.tuples(
    st.integers(min_value=1, max_value=40 * 24 * 60),  # minutes
    st.sampled_from(HOSTS),
    st.integers(min_value=1, max_value=16),
    st.integers(min_value=1, max_value=64),  # GiB
    st.integers(min_value=0, max_value=500),  # GiB
    st.sampled_from(["running", "stopped", "suspended"]),
    st.sampled_from(["alice", "bob", None]),
)
vm_history = st.tuples(
    st.integers(min_value=0, max_value=60 * 24 * 60),  # first start, minutes after START
    st.lists(segment, min_size=1, max_size=6),
    st.booleans(),  # the last record is still open
    st.sampled_from(["default", "lab"]),
    st.sampled_from(["shop", "ops", None]),
)


def build(histories: list[tuple[int, list[tuple[int, str, int, int, int, str, str | None]], bool, str, str | None]]):  # type: ignore[no-untyped-def]
    records: list[HistoryRecord] = []
    for index, (offset, segments, still_open, namespace, stack) in enumerate(histories):
        moment = START + timedelta(minutes=offset)
        for position, (minutes, host, vcpu, memory, disk, state, owner) in enumerate(segments):
            end = moment + timedelta(minutes=minutes)
            last = position == len(segments) - 1
            ended = None if last and still_open else min(end, NOW)
            if moment >= NOW:
                break
            records.append(
                HistoryRecord(
                    id=len(records) + 1,
                    namespace=namespace,
                    name=f"vm-{index}",
                    stack=stack,
                    host=host,
                    started_at=moment,
                    ended_at=ended,
                    vcpu=vcpu,
                    memory=memory << 30,
                    disk=disk << 30,
                    reason="created" if position == 0 else "migrated",
                    end_reason=None if ended is None else "deleted",
                    state=state,
                    owner=owner,
                )
            )
            if ended is None or ended >= NOW:
                break
            moment = ended
    return records


@settings(max_examples=60, deadline=None)
@given(st.lists(vm_history, min_size=1, max_size=8))
def test_groupings_sum_to_the_per_vm_total(histories) -> None:  # type: ignore[no-untyped-def]
    records = build(histories)
    for month in MONTHS:
        rows = price_month(month, clip(records, month_period(month), now=NOW), BOOK, LABELS)
        per_vm = bills(rows, "vm")
        total = sum(bill.cost for bill in per_vm)
        for by in GROUPINGS:
            grouped = bills(rows, by)
            assert sum(b.cost for b in grouped) == pytest.approx(total, rel=1e-9, abs=1e-9)
            assert sum(b.running_hours + b.stopped_hours for b in grouped) == pytest.approx(
                sum(b.running_hours + b.stopped_hours for b in per_vm), rel=1e-9, abs=1e-9
            )
        for row in rows:
            assert row.cost == pytest.approx(row.cpu_cost + row.memory_cost + row.disk_cost)
            assert row.cost >= 0


@settings(max_examples=60, deadline=None)
@given(st.lists(vm_history, min_size=1, max_size=8))
def test_no_hour_is_counted_twice(histories) -> None:  # type: ignore[no-untyped-def]
    records = build(histories)
    whole = Period(datetime(2023, 11, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    total = {s.key: s for s in summarise(clip(records, whole, now=NOW), "vm")}
    monthly: dict[str, float] = {}
    for month in MONTHS:
        period = month_period(month)
        length = (period.end - period.start).total_seconds() / 3600
        for sums in summarise(clip(records, period, now=NOW), "vm"):
            hours = sums.running_hours + sums.stopped_hours
            assert hours <= length + 1e-9, f"{sums.key} counted {hours} h in {month}, which has {length} h"
            monthly[sums.key] = monthly.get(sums.key, 0.0) + hours
    assert set(monthly) == set(total)
    for key, sums in total.items():
        assert monthly[key] == pytest.approx(sums.running_hours + sums.stopped_hours, rel=1e-9, abs=1e-9)
        # Never more than the VM's life from its first record to now.
        first = min(r.started_at for r in records if f"{r.namespace}/{r.name}" == key)
        assert monthly[key] <= (NOW - first).total_seconds() / 3600 + 1e-9
