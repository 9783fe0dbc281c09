"""Showback: the usage of a month priced with the configured price book.

Prices are per vCPU-hour, per GiB-hour of memory and per GiB-hour of disk, in one currency. Overrides change
some of them on one host, or on the hosts carrying some labels; for each of the three prices, a host override
that sets it wins, else the first label override (in the configuration's order) whose labels the host carries
and that sets it, else the base price.

With ``only_running`` (OpenNebula's SHOWBACK_ONLY_RUNNING), CPU and memory are charged only for the hours a VM
ran; disk is charged for every hour, since a stopped VM still holds its disks. Otherwise every hour is charged
in full.

Pure: ``price_month`` takes the month's usages (``usage.clip``), the book and the hosts' labels, and returns one
``ShowbackRow`` per VM, host, stack and owner. ``nebctl showback`` stores them and sums them for display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nebctl.accounting.usage import GIB, HOUR, RUNNING, Usage
from nebctl.database.records import ShowbackRow

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


def price_month(
    month: str,
    usages: Sequence[Usage],
    book: PriceBook,
    host_labels: Mapping[str, Mapping[str, str]],
) -> list[ShowbackRow]:
    """One priced row per (VM, host, stack, owner) of ``usages`` (already cut to ``month``), by VM then host."""
    # One pass, summing seconds and size-seconds per group: a month of a large fleet is tens of thousands of
    # records, and this is most of ``showback``'s time.
    sums: dict[tuple[str, str, str, str | None, str | None], list[float]] = {}
    only_running = book.only_running
    for usage in usages:
        key = (usage.namespace, usage.name, usage.host, usage.stack, usage.owner)
        total = sums.get(key)
        if total is None:
            total = sums[key] = [0.0, 0.0, 0.0, 0.0, 0.0]  # running s, stopped s, vCPU-s, memory B-s, disk B-s
        seconds = usage.seconds
        running = usage.state == RUNNING
        total[0 if running else 1] += seconds
        if running or not only_running:
            total[2] += usage.vcpu * seconds
            total[3] += usage.memory * seconds
        total[4] += usage.disk * seconds
    prices_of: dict[str, Prices] = {}
    rows = []
    for (namespace, name, host, stack, owner), total in sorted(
        sums.items(), key=lambda item: (item[0][0], item[0][1], item[0][2], item[0][3] or "", item[0][4] or "")
    ):
        prices = prices_of.get(host)
        if prices is None:
            prices = prices_of[host] = book.prices_for(host, host_labels.get(host, {}))
        vcpu_hours = total[2] / HOUR
        memory_gib_hours = total[3] / GIB / HOUR
        disk_gib_hours = total[4] / GIB / HOUR
        cpu_cost = vcpu_hours * prices.vcpu_hour
        memory_cost = memory_gib_hours * prices.memory_gib_hour
        disk_cost = disk_gib_hours * prices.disk_gib_hour
        rows.append(
            ShowbackRow(
                month=month,
                namespace=namespace,
                name=name,
                stack=stack,
                owner=owner,
                host=host,
                running_hours=total[0] / HOUR,
                stopped_hours=total[1] / HOUR,
                vcpu_hours=vcpu_hours,
                memory_gib_hours=memory_gib_hours,
                disk_gib_hours=disk_gib_hours,
                cpu_cost=cpu_cost,
                memory_cost=memory_cost,
                disk_cost=disk_cost,
                cost=cpu_cost + memory_cost + disk_cost,
                currency=book.currency,
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
    groups: dict[str, list[ShowbackRow]] = {}
    for row in rows:
        groups.setdefault(showback_key(row, by), []).append(row)
    return [
        Bill(
            key=key,
            running_hours=sum(r.running_hours for r in members),
            stopped_hours=sum(r.stopped_hours for r in members),
            vcpu_hours=sum(r.vcpu_hours for r in members),
            memory_gib_hours=sum(r.memory_gib_hours for r in members),
            disk_gib_hours=sum(r.disk_gib_hours for r in members),
            cpu_cost=sum(r.cpu_cost for r in members),
            memory_cost=sum(r.memory_cost for r in members),
            disk_cost=sum(r.disk_cost for r in members),
            cost=sum(r.cost for r in members),
        )
        for key, members in sorted(groups.items())
    ]
