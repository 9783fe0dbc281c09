"""Accounting and showback over crafted histories, checked against hours and costs worked out by hand.

The price book: 0.02 a vCPU-hour, 0.01 a GiB-hour of memory, 0.001 a GiB-hour of disk; host ``b`` overrides
the vCPU price (0.05); hosts labelled ``tier=gold`` (``b`` and ``c``) override the memory price (0.03). Host
``b`` thus takes its vCPU price from its host override and its memory price from the label override.

May 2024 has 31 days (744 hours). Each VM below is one case of the decision table; the comment on each
expectation is the arithmetic.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nebctl.accounting.pricing import PriceBook, PriceOverride, Prices, bills, price_month
from nebctl.accounting.usage import Period, clip, month_period, months, parse_time, summarise
from nebctl.database.records import HistoryRecord

GIB = 1 << 30
NOW = datetime(2024, 6, 10, tzinfo=UTC)  # after every case; open records run until then
BOOK = PriceBook(
    base=Prices(vcpu_hour=0.02, memory_gib_hour=0.01, disk_gib_hour=0.001),
    overrides=(
        PriceOverride(labels={"tier": "gold"}, memory_gib_hour=0.03),
        PriceOverride(host="b", vcpu_hour=0.05),
    ),
    currency="EUR",
)
LABELS = {"a": {"tier": "bronze"}, "b": {"tier": "gold"}, "c": {"tier": "gold"}}


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


_ids = iter(range(1, 1000))


def rec(
    vm: str,
    host: str,
    start: str,
    end: str | None,
    *,
    vcpu: int = 1,
    memory: int = GIB,
    disk: int = 0,
    state: str = "running",
    reason: str = "created",
    end_reason: str | None = None,
    owner: str | None = "alice",
    stack: str | None = "shop",
    namespace: str = "default",
) -> HistoryRecord:
    return HistoryRecord(
        id=next(_ids),
        namespace=namespace,
        name=vm,
        stack=stack,
        host=host,
        started_at=t(start),
        ended_at=t(end) if end else None,
        vcpu=vcpu,
        memory=memory,
        disk=disk,
        reason=reason,
        end_reason=end_reason,
        state=state,
        owner=owner,
    )


HISTORY = [
    # created mid-month, still running
    rec("a", "a", "2024-05-16T00:00", None, vcpu=2, memory=4 * GIB, disk=10 * GIB),
    # migrated twice, then deleted
    rec("b", "a", "2024-05-01T00:00", "2024-05-03T00:00", end_reason="migrated"),
    rec("b", "b", "2024-05-03T00:00", "2024-05-05T12:00", reason="migrated", end_reason="migrated"),
    rec("b", "a", "2024-05-05T12:00", "2024-05-06T00:00", reason="migrated", end_reason="deleted"),
    # resized after a day, deleted a day later
    rec("c", "a", "2024-05-10T00:00", "2024-05-11T00:00", vcpu=2, memory=2 * GIB, end_reason="resized"),
    rec("c", "a", "2024-05-11T00:00", "2024-05-12T00:00", vcpu=4, memory=8 * GIB, reason="resized"),
    # stopped for a week
    rec("d", "a", "2024-05-01T00:00", "2024-05-08T00:00", memory=2 * GIB, disk=20 * GIB, end_reason="stopped"),
    rec(
        "d",
        "a",
        "2024-05-08T00:00",
        "2024-05-15T00:00",
        memory=2 * GIB,
        disk=20 * GIB,
        state="stopped",
        reason="stopped",
        end_reason="started",
        owner="bob",
    ),
    rec("d", "a", "2024-05-15T00:00", "2024-05-16T00:00", memory=2 * GIB, disk=20 * GIB, reason="started"),
    # created and deleted the same day, on a gold host
    rec("e", "c", "2024-05-20T06:00", "2024-05-20T18:00", end_reason="deleted", namespace="lab", stack="lab"),
    # spanning the April/May boundary
    rec("f", "a", "2024-04-30T12:00", "2024-05-01T12:00", end_reason="deleted"),
    # spanning the 2023/2024 boundary
    rec("g", "a", "2023-12-31T18:00", "2024-01-01T06:00", end_reason="deleted"),
]

# VM -> (running hours, stopped hours, vCPU-hours, memory GiB-hours, disk GiB-hours, cost) in May 2024.
MAY = {
    "a": (384, 0, 768, 1536, 3840, 34.56),  # 16 days x 24; 768*0.02 + 1536*0.01 + 3840*0.001
    "b": (120, 0, 120, 120, 0, 6.6),  # on a 60 h: 60*0.02+60*0.01 = 1.8; on b 60 h: 60*0.05 + 60*0.03 = 4.8
    "c": (48, 0, 144, 240, 0, 5.28),  # 24*2 + 24*4 = 144 vCPU-h -> 2.88; 24*2 + 24*8 = 240 GiB-h -> 2.40
    "d": (192, 168, 360, 720, 7200, 21.6),  # 360 h at 1 vCPU -> 7.2; 720 GiB-h -> 7.2; 7200 GiB-h disk -> 7.2
    "e": (12, 0, 12, 12, 0, 0.6),  # 12*0.02 + 12*0.03 (gold memory)
    "f": (12, 0, 12, 12, 0, 0.36),  # 12 h of May: 12*0.02 + 12*0.01
}


def may_rows(book: PriceBook = BOOK):  # type: ignore[no-untyped-def]
    period = month_period("2024-05")
    return price_month("2024-05", clip(HISTORY, period, now=NOW), book, LABELS)


@pytest.mark.parametrize("vm", sorted(MAY))
def test_each_vm_of_may(vm: str) -> None:
    running, stopped, vcpu_hours, memory_hours, disk_hours, cost = MAY[vm]
    mine = [row for row in may_rows() if row.name == vm]
    assert sum(r.running_hours for r in mine) == pytest.approx(running)
    assert sum(r.stopped_hours for r in mine) == pytest.approx(stopped)
    assert sum(r.vcpu_hours for r in mine) == pytest.approx(vcpu_hours)
    assert sum(r.memory_gib_hours for r in mine) == pytest.approx(memory_hours)
    assert sum(r.disk_gib_hours for r in mine) == pytest.approx(disk_hours)
    assert sum(r.cost for r in mine) == pytest.approx(cost)
    assert all(r.currency == "EUR" and r.month == "2024-05" for r in mine)


def test_vm_rows_split_by_host_and_owner() -> None:
    rows = {(r.name, r.host, r.owner): r for r in may_rows()}
    assert rows[("b", "a", "alice")].cost == pytest.approx(1.8)
    assert rows[("b", "b", "alice")].cost == pytest.approx(4.8)
    assert rows[("b", "b", "alice")].cpu_cost == pytest.approx(3.0)  # host override: 60 * 0.05
    assert rows[("b", "b", "alice")].memory_cost == pytest.approx(1.8)  # label override: 60 * 0.03
    assert rows[("d", "a", "bob")].stopped_hours == pytest.approx(168)
    assert rows[("d", "a", "alice")].running_hours == pytest.approx(192)


def test_may_by_every_grouping() -> None:
    rows = may_rows()
    total = 34.56 + 6.6 + 5.28 + 21.6 + 0.6 + 0.36
    assert sum(r.cost for r in rows) == pytest.approx(total) == pytest.approx(69.0)
    by_host = {b.key: b.cost for b in bills(rows, "host")}
    assert by_host == pytest.approx({"a": 34.56 + 1.8 + 5.28 + 21.6 + 0.36, "b": 4.8, "c": 0.6})
    assert {b.key: b.cost for b in bills(rows, "namespace")} == pytest.approx({"default": 68.4, "lab": 0.6})
    assert {b.key: b.cost for b in bills(rows, "stack")} == pytest.approx({"shop": 68.4, "lab": 0.6})
    # bob owns d's stopped week: 168 h * (0.02 + 2*0.01 + 20*0.001) = 168 * 0.06
    assert {b.key: b.cost for b in bills(rows, "user")} == pytest.approx({"alice": 69.0 - 10.08, "bob": 10.08})


def test_only_running_charges_cpu_and_memory_only_while_running() -> None:
    book = PriceBook(BOOK.base, BOOK.overrides, "EUR", only_running=True)
    d = [r for r in may_rows(book) if r.name == "d"]
    # 192 running hours: 192*0.02 + 384*0.01; disk all 360 h: 7200*0.001
    assert sum(r.cost for r in d) == pytest.approx(3.84 + 3.84 + 7.2)
    assert sum(r.vcpu_hours for r in d) == pytest.approx(192)
    assert sum(r.disk_gib_hours for r in d) == pytest.approx(7200)


def test_month_boundaries_cut_records_exactly() -> None:
    april = clip(HISTORY, month_period("2024-04"), now=NOW)
    assert [(u.name, u.hours) for u in april] == [("f", 12.0)]
    assert april[0].end == t("2024-05-01T00:00")
    december = price_month("2023-12", clip(HISTORY, month_period("2023-12"), now=NOW), BOOK, LABELS)
    january = price_month("2024-01", clip(HISTORY, month_period("2024-01"), now=NOW), BOOK, LABELS)
    for rows in (december, january):
        assert [(r.name, r.running_hours) for r in rows] == [("g", 6.0)]
        assert rows[0].cost == pytest.approx(6 * 0.03)
    assert month_period("2024-02").end == t("2024-03-01T00:00")  # a leap year's February: 29 days
    assert (month_period("2024-02").end - month_period("2024-02").start).days == 29
    assert month_period("2023-12").end == t("2024-01-01T00:00")


def test_open_record_counts_until_now_and_not_beyond_the_period() -> None:
    june = clip(HISTORY, month_period("2024-06"), now=NOW)
    assert [(u.name, u.hours, u.open) for u in june] == [("a", 9 * 24.0, True)]


def test_accounting_sums() -> None:
    usages = clip(HISTORY, Period(t("2024-05-01T00:00"), t("2024-06-01T00:00")), now=NOW)
    by_vm = {s.key: s for s in summarise(usages, "vm")}
    assert by_vm["default/b"].records == 3
    assert by_vm["default/d"].stopped_hours == pytest.approx(168)
    assert by_vm["default/c"].vcpu_hours == pytest.approx(144)
    by_host = {s.key: s.records for s in summarise(usages, "host")}
    assert by_host == {"a": 9, "b": 1, "c": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2024-13", "is not a month of the form YYYY-MM"),
        ("2024-5", "is not a month of the form YYYY-MM"),
        ("May", "is not a month of the form YYYY-MM"),
        ("1969-12", "before 1970"),
    ],
)
def test_bad_months_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        month_period(text)


def test_times_and_periods() -> None:
    assert parse_time("2024-05-01") == t("2024-05-01T00:00")
    assert parse_time("2024-05-01T02:00:00+02:00") == t("2024-05-01T00:00")
    assert parse_time("2024-05-01T00:00:00Z") == t("2024-05-01T00:00")
    with pytest.raises(ValueError, match="--from: 'yesterday' is not an ISO 8601"):
        parse_time("yesterday", option="--from")
    with pytest.raises(ValueError, match=r"ends .* before it starts"):
        Period(t("2024-05-02T00:00"), t("2024-05-01T00:00"))
    assert months(Period(t("2023-11-15T00:00"), t("2024-02-01T00:00"))) == ["2023-11", "2023-12", "2024-01"]


def test_price_precedence() -> None:
    assert BOOK.prices_for("a", LABELS["a"]) == Prices(0.02, 0.01, 0.001)
    assert BOOK.prices_for("b", LABELS["b"]) == Prices(0.05, 0.03, 0.001)
    assert BOOK.prices_for("c", LABELS["c"]) == Prices(0.02, 0.03, 0.001)
    assert BOOK.prices_for("unknown", {}) == Prices(0.02, 0.01, 0.001)
