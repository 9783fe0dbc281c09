"""Usage of placement records over a period: each record cut to the period, then sums by a grouping.

A placement record says that a VM of some size (vCPUs, memory bytes, disk bytes) was on a host in some state
from ``started_at`` to ``ended_at`` (still open: until now). Over a period [start, end), a record counts for the
part of it inside the period, to the microsecond: month and year boundaries cut records exactly, and a record
never counts outside its own interval, so the usage of consecutive periods adds up to the usage of their union.

Used by ``nebctl accounting`` (``clip`` then ``summarise``), ``accounting.pricing`` and the benchmarks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from nebctl.database.records import HistoryRecord

HOUR = 3600.0
GIB = float(1 << 30)
GROUPINGS = ("vm", "host", "namespace", "stack", "user")
RUNNING = "running"

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Period:
    """A half-open interval of UTC time [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("period bounds must be aware UTC times")
        if self.end <= self.start:
            raise ValueError(f"the period ends ({iso(self.end)}) before it starts ({iso(self.start)})")


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the second when there are no microseconds."""
    text = moment.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def parse_time(text: str, *, option: str = "time") -> datetime:
    """An ISO 8601 date (``2024-05-01``, midnight UTC) or date-time; one without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not an ISO 8601 date or time (such as 2024-05-01T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def month_period(text: str) -> Period:
    """The calendar month ``YYYY-MM`` as a period, from its first midnight to the next month's, UTC."""
    match = _MONTH.match(text.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"--month: {text!r} is not a month of the form YYYY-MM (such as 2024-05)")
    year, month = int(match.group(1)), int(match.group(2))
    if year < 1970:
        raise ValueError(f"--month: {text!r} is before 1970")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if month == 12 else datetime(year, month + 1, 1, tzinfo=UTC)
    return Period(start, end)


def month_of(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def months(period: Period) -> list[str]:
    """The calendar months a period touches, in order."""
    names = []
    day = date(period.start.year, period.start.month, 1)
    while datetime(day.year, day.month, 1, tzinfo=UTC) < period.end:
        names.append(f"{day.year:04d}-{day.month:02d}")
        day = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
    return names


@dataclass(frozen=True)
class Usage:
    """One placement record cut to a period. ``open`` says the record had not ended (it was counted to now)."""

    namespace: str
    name: str
    stack: str | None
    owner: str | None
    host: str
    state: str
    reason: str
    end_reason: str | None
    start: datetime
    end: datetime
    open: bool
    vcpu: int
    memory: int
    disk: int
    instance_type: str | None = None  # the cloud instance type it ran as; None off the cloud

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / timedelta(seconds=1)

    @property
    def hours(self) -> float:
        return self.seconds / HOUR

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def vcpu_hours(self) -> float:
        return self.vcpu * self.hours

    @property
    def memory_gib_hours(self) -> float:
        return self.memory / GIB * self.hours

    @property
    def disk_gib_hours(self) -> float:
        return self.disk / GIB * self.hours

    @property
    def vm(self) -> str:
        return f"{self.namespace}/{self.name}"


def clip(records: Iterable[HistoryRecord], period: Period, *, now: datetime) -> list[Usage]:
    """The part of each record inside ``period`` (an open record runs until ``now``); records that do not
    overlap it are left out. In the records' order."""
    usages = []
    for record in records:
        end = record.ended_at if record.ended_at is not None else now
        start, stop = max(record.started_at, period.start), min(end, period.end)
        if stop <= start:
            continue
        usages.append(
            Usage(
                namespace=record.namespace,
                name=record.name,
                stack=record.stack,
                owner=record.owner,
                host=record.host,
                state=record.state,
                reason=record.reason,
                end_reason=record.end_reason,
                start=start,
                end=stop,
                open=record.ended_at is None,
                vcpu=record.vcpu,
                memory=record.memory,
                disk=record.disk,
                instance_type=record.instance_type,
            )
        )
    return usages


def group_key(usage: Usage, by: str) -> str:
    """The value ``usage`` is grouped under: the VM (``namespace/name``), host, namespace, stack or user."""
    if by == "vm":
        return usage.vm
    if by == "host":
        return usage.host
    if by == "namespace":
        return usage.namespace
    if by == "stack":
        return usage.stack or "-"
    if by == "user":
        return usage.owner or "-"
    raise ValueError(f"--by {by!r}: expected one of {', '.join(GROUPINGS)}")


@dataclass(frozen=True)
class Totals:
    """The sums of one group: how many records, hours running and stopped, and the size-hours."""

    key: str
    records: int
    running_hours: float
    stopped_hours: float
    vcpu_hours: float
    memory_gib_hours: float
    disk_gib_hours: float


def summarise(usages: Sequence[Usage], by: str) -> list[Totals]:
    """Sums by ``by`` (one of ``GROUPINGS``), in key order. Every usage counts in exactly one group."""
    groups: dict[str, list[Usage]] = {}
    for usage in usages:
        groups.setdefault(group_key(usage, by), []).append(usage)
    return [
        Totals(
            key=key,
            records=len(members),
            running_hours=sum(u.hours for u in members if u.running),
            stopped_hours=sum(u.hours for u in members if not u.running),
            vcpu_hours=sum(u.vcpu_hours for u in members),
            memory_gib_hours=sum(u.memory_gib_hours for u in members),
            disk_gib_hours=sum(u.disk_gib_hours for u in members),
        )
        for key, members in sorted(groups.items())
    ]
