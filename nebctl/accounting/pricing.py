"""Showback: the usage of a month priced with the configured price book.

Prices are per vCPU-hour, per GiB-hour of memory and per GiB-hour of disk, in one currency. Overrides change
some of them on one host, or on the hosts carrying some labels; for each of the three prices, a host override
that sets it wins, else the first label override (in the configuration's order) whose labels the host carries
and that sets it, else the base price.

With ``only_running`` (OpenNebula's SHOWBACK_ONLY_RUNNING), CPU and memory are charged only for the hours a VM
ran; disk is charged for every hour, since a stopped VM still holds its disks. Otherwise every hour is charged
in full.

A VM on a cloud host ran as an instance type (the placement record's ``instance_type``). When the book has a
price per hour of that type (``instance_hour``, by ``TYPE`` or ``REGION.TYPE``: ``cloudprices``), the instance's
hours are charged at that price in place of its vCPU and memory prices (the cloud bills the instance, whatever
its size): ``cpu_cost`` is the instance-hours times the price, ``memory_cost`` is 0, and the row names the type.
The instance-hours are the hours CPU and memory would be charged for (with ``only_running``, the running
hours). Disks are priced as on any host. A type without a price is priced per vCPU and GiB as before.

Pure: ``price_month`` takes the month's usages (``usage.clip``), the book, the hosts' labels and the cloud
hosts' regions, and returns one ``ShowbackRow`` per VM, host, stack, owner and instance type. ``nebctl
showback`` stores them and sums them for display.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nebctl.accounting.cloudprices import instance_hour_price
from nebctl.accounting.usage import GIB, HOUR, RUNNING, Usage, month_period
from nebctl.database.records import HistorySpan, ShowbackRow

PRICE_NAMES = ("vcpu_hour", "memory_gib_hour", "disk_gib_hour")


@dataclass(frozen=True)
class Prices:
    vcpu_hour: float = 0.0
    memory_gib_hour: float = 0.0
    disk_gib_hour: float = 0.0


@dataclass(frozen=True)
class PriceOverride:
    """Prices for one host (``host``), or for hosts carrying all of ``labels``; None keeps the price."""

    host: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    vcpu_hour: float | None = None
    memory_gib_hour: float | None = None
    disk_gib_hour: float | None = None

    def applies_to(self, host: str, labels: Mapping[str, str]) -> bool:
        if self.host is not None:
            return self.host == host
        return bool(self.labels) and all(labels.get(key) == value for key, value in self.labels.items())


@dataclass(frozen=True)
class PriceBook:
    base: Prices = field(default_factory=Prices)
    overrides: Sequence[PriceOverride] = ()
    currency: str = "EUR"
    only_running: bool = False
    instance_hour: Mapping[str, float] = field(default_factory=dict)  # by TYPE or REGION.TYPE

    def prices_for(self, host: str, labels: Mapping[str, str]) -> Prices:
        host_rules = [o for o in self.overrides if o.host is not None and o.applies_to(host, labels)]
        label_rules = [o for o in self.overrides if o.host is None and o.applies_to(host, labels)]
        chosen = {}
        for name in PRICE_NAMES:
            value = getattr(self.base, name)
            for rule in (*host_rules, *label_rules):
                if getattr(rule, name) is not None:
                    value = getattr(rule, name)
                    break
            chosen[name] = float(value)
        return Prices(**chosen)


# Per (namespace, name, host, stack, owner, instance type): running seconds, stopped seconds, vCPU-, memory
# byte- and disk byte-seconds.
_Key = tuple[str, str, str, str | None, str | None, str | None]
_Sums = dict[_Key, list[float]]


def price_month(
    month: str,
    usages: Sequence[Usage],
    book: PriceBook,
    host_labels: Mapping[str, Mapping[str, str]],
    host_regions: Mapping[str, str | None] | None = None,
) -> list[ShowbackRow]:
    """One priced row per (VM, host, stack, owner, instance type) of ``usages`` (already cut to ``month``), by VM
    then host. ``host_regions`` gives the region of each cloud host, for regional instance-hour prices."""
    # One pass, summing seconds and size-seconds per group.
    sums: _Sums = {}
    only_running = book.only_running
    for usage in usages:
        key = (usage.namespace, usage.name, usage.host, usage.stack, usage.owner, usage.instance_type)
        total = sums.get(key)
        if total is None:
            total = sums[key] = [0.0, 0.0, 0.0, 0.0, 0.0]
        seconds = usage.seconds
        running = usage.state == RUNNING
        total[0 if running else 1] += seconds
        if running or not only_running:
            total[2] += usage.vcpu * seconds
            total[3] += usage.memory * seconds
        total[4] += usage.disk * seconds
    return _priced(month, sums, book, host_labels, host_regions or {})


def price_spans(
    month: str,
    spans: Iterable[HistorySpan],
    book: PriceBook,
    host_labels: Mapping[str, Mapping[str, str]],
    host_regions: Mapping[str, str | None] | None = None,
    *,
    now: datetime,
) -> list[ShowbackRow]:
    """``price_month(month, clip(records, month_period(month), now=now), ...)`` in one pass over the placement
    records as plain tuples (``Store.history_spans``), with the same arithmetic in the same order, so the same
    rows to the last bit. A month of a large fleet is tens of thousands of records: a ``Usage`` object for
    each was most of ``showback``'s pricing time."""
    period = month_period(month)
    # The spans' times are microseconds since 1970: so are the bounds here. A span's seconds are its whole
    # microseconds over a million, the very division ``Usage.seconds`` makes of two datetimes.
    period_start = _micros(period.start)
    period_end = _micros(period.end)
    until = _micros(now)
    sums: _Sums = {}
    only_running = book.only_running
    for namespace, name, host, stack, owner, state, started_at, ended_at, vcpu, memory, disk, kind in spans:
        end = until if ended_at is None else ended_at
        start = started_at if started_at > period_start else period_start
        stop = end if end < period_end else period_end
        if stop <= start:
            continue
        key = (namespace, name, host, stack, owner, kind)
        total = sums.get(key)
        if total is None:
            total = sums[key] = [0.0, 0.0, 0.0, 0.0, 0.0]
        seconds = (stop - start) / 1_000_000
        running = state == RUNNING
        total[0 if running else 1] += seconds
        if running or not only_running:
            total[2] += vcpu * seconds
            total[3] += memory * seconds
        total[4] += disk * seconds
    return _priced(month, sums, book, host_labels, host_regions or {})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _sort_key(key: _Key) -> tuple[str, str, str, str, str, str]:
    return (key[0], key[1], key[2], key[3] or "", key[4] or "", key[5] or "")


def _priced(
    month: str,
    sums: _Sums,
    book: PriceBook,
    host_labels: Mapping[str, Mapping[str, str]],
    host_regions: Mapping[str, str | None],
) -> list[ShowbackRow]:
    """The priced rows of the sums, by VM, host, stack, owner then instance type."""
    prices_of: dict[str, Prices] = {}
    instance_prices: dict[tuple[str, str], float | None] = {}
    currency = book.currency
    only_running = book.only_running
    rows: list[ShowbackRow] = []
    append = rows.append
    # The keys arrive by VM from ``Store.history_spans``: nearly sorted runs, cheap for the sort.
    for key in sorted(sums, key=_sort_key):
        namespace, name, host, stack, owner, kind = key
        total = sums[key]
        prices = prices_of.get(host)
        if prices is None:
            prices = prices_of[host] = book.prices_for(host, host_labels.get(host, {}))
        vcpu_hours = total[2] / HOUR
        memory_gib_hours = total[3] / GIB / HOUR
        disk_gib_hours = total[4] / GIB / HOUR
        disk_cost = disk_gib_hours * prices.disk_gib_hour
        hourly = None
        if kind is not None:
            found = (host, kind)
            if found in instance_prices:
                hourly = instance_prices[found]
            else:
                hourly = instance_prices[found] = instance_hour_price(book.instance_hour, kind, host_regions.get(host))
        if hourly is None:
            cpu_cost = vcpu_hours * prices.vcpu_hour
            memory_cost = memory_gib_hours * prices.memory_gib_hour
            priced_as = None
        else:
            # The hours the instance is charged: those its vCPUs and memory would be.
            charged = total[0] if only_running else total[0] + total[1]
            cpu_cost = charged / HOUR * hourly
            memory_cost = 0.0
            priced_as = kind
        # Positional, in ``ShowbackRow``'s field order: month, namespace, name, stack, owner, host, running and
        # stopped hours, vCPU-, memory- and disk-hours, the three costs, their sum, the currency, the type.
        append(
            ShowbackRow(
                month,
                namespace,
                name,
                stack,
                owner,
                host,
                total[0] / HOUR,
                total[1] / HOUR,
                vcpu_hours,
                memory_gib_hours,
                disk_gib_hours,
                cpu_cost,
                memory_cost,
                disk_cost,
                cpu_cost + memory_cost + disk_cost,
                currency,
                priced_as,
            )
        )
    return rows


def showback_key(row: ShowbackRow, by: str) -> str:
    """The group of a priced row, as ``usage.group_key`` for usages."""
    values = {
        "vm": f"{row.namespace}/{row.name}",
        "host": row.host,
        "namespace": row.namespace,
        "stack": row.stack or "-",
        "user": row.owner or "-",
    }
    if by not in values:
        raise ValueError(f"--by {by!r}: expected one of {', '.join(values)}")
    return values[by]


@dataclass(frozen=True)
class Bill:
    """The sums of one group of priced rows."""

    key: str
    running_hours: float
    stopped_hours: float
    vcpu_hours: float
    memory_gib_hours: float
    disk_gib_hours: float
    cpu_cost: float
    memory_cost: float
    disk_cost: float
    cost: float


def bills(rows: Sequence[ShowbackRow], by: str) -> list[Bill]:
    """Sums of ``rows`` by ``by``, in key order; every row counts in exactly one bill."""
    if by not in ("vm", "host", "namespace", "stack", "user"):
        showback_key(rows[0] if rows else _NO_ROW, by)  # raises the error naming the choices
    # One pass, adding each row's figures in row order (the same sums as ``sum`` over each group's rows): a
    # large month is tens of thousands of rows.
    groups: dict[str, list[float]] = {}
    for row in rows:
        if by == "vm":
            key = f"{row.namespace}/{row.name}"
        elif by == "host":
            key = row.host
        elif by == "namespace":
            key = row.namespace
        elif by == "stack":
            key = row.stack or "-"
        else:
            key = row.owner or "-"
        total = groups.get(key)
        if total is None:
            total = groups[key] = [0] * 9  # ints, as ``sum`` starts from 0
        total[0] += row.running_hours
        total[1] += row.stopped_hours
        total[2] += row.vcpu_hours
        total[3] += row.memory_gib_hours
        total[4] += row.disk_gib_hours
        total[5] += row.cpu_cost
        total[6] += row.memory_cost
        total[7] += row.disk_cost
        total[8] += row.cost
    return [Bill(key, *total) for key, total in sorted(groups.items())]


_NO_ROW = ShowbackRow("0000-00", "", "", None, None, "", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "")
