"""Showback of VMs on a cloud host, priced per instance-hour, checked against costs worked out by hand.

The price book: 0.02 a vCPU-hour, 0.01 a GiB-hour of memory, 0.001 a GiB-hour of disk; per instance-hour,
t3.small 0.0208 anywhere and 0.0228 in eu-west-1, t3.large 0.0832. Host ``aws`` is ``ec2://eu-west-1``, host
``kvm`` a local one. Every record is in May 2024.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nebctl.accounting.pricing import PriceBook, Prices, price_month
from nebctl.accounting.usage import clip, month_period
from nebctl.database.records import HistoryRecord

GIB = 1 << 30
NOW = datetime(2024, 6, 10, tzinfo=UTC)
PRICES = Prices(vcpu_hour=0.02, memory_gib_hour=0.01, disk_gib_hour=0.001)
INSTANCE_HOUR = {"t3.small": 0.0208, "eu-west-1.t3.small": 0.0228, "t3.large": 0.0832}
REGIONS = {"aws": "eu-west-1"}


def rec(
    vm: str, host: str, start: str, end: str, kind: str | None, *, state: str = "running", disk: int = 0
) -> HistoryRecord:
    return HistoryRecord(
        id=0,
        namespace="default",
        name=vm,
        stack="burst",
        host=host,
        started_at=datetime.fromisoformat(start).replace(tzinfo=UTC),
        ended_at=datetime.fromisoformat(end).replace(tzinfo=UTC),
        vcpu=2,
        memory=2 * GIB,
        disk=disk,
        reason="created",
        end_reason="deleted",
        state=state,
        owner="alice",
        instance_type=kind,
    )


HISTORY = [
    # web-1 ran 10 days as a t3.small in eu-west-1 (240 h), then was stopped 2 days (48 h).
    rec("web-1", "aws", "2024-05-01T00:00:00", "2024-05-11T00:00:00", "t3.small", disk=10 * GIB),
    rec("web-1", "aws", "2024-05-11T00:00:00", "2024-05-13T00:00:00", "t3.small", state="stopped", disk=10 * GIB),
    # web-2 ran 100 h as a t3.large (no regional price: the type's own).
    rec("web-2", "aws", "2024-05-02T00:00:00", "2024-05-06T04:00:00", "t3.large"),
    # web-3 ran 24 h as an m5.large, which has no price: per vCPU and GiB as a local VM.
    rec("web-3", "aws", "2024-05-03T00:00:00", "2024-05-04T00:00:00", "m5.large"),
    # db-1 ran 24 h on the local host: 2 vCPU and 2 GiB.
    rec("db-1", "kvm", "2024-05-03T00:00:00", "2024-05-04T00:00:00", None),
]


def priced(only_running: bool) -> dict[str, tuple[str | None, float, float, float, float]]:
    book = PriceBook(base=PRICES, instance_hour=INSTANCE_HOUR, only_running=only_running)
    period = month_period("2024-05")
    rows = price_month("2024-05", clip(HISTORY, period, now=NOW), book, {}, REGIONS)
    return {row.name: (row.instance_type, row.cpu_cost, row.memory_cost, row.disk_cost, row.cost) for row in rows}


@pytest.mark.parametrize(
    ("vm", "only_running", "expected"),
    [
        # 288 instance-hours (running and stopped) at eu-west-1's 0.0228 = 6.5664; disk 10 GiB x 288 h x 0.001.
        ("web-1", False, ("t3.small", 6.5664, 0.0, 2.88, 9.4464)),
        # Only the 240 running hours are charged for the instance: 5.472; disk every hour still.
        ("web-1", True, ("t3.small", 5.472, 0.0, 2.88, 8.352)),
        # 100 h x 0.0832.
        ("web-2", False, ("t3.large", 8.32, 0.0, 0.0, 8.32)),
        # No price for m5.large: 2 vCPU x 24 h x 0.02 = 0.96 and 2 GiB x 24 h x 0.01 = 0.48.
        ("web-3", False, (None, 0.96, 0.48, 0.0, 1.44)),
        # A local VM: as above.
        ("db-1", False, (None, 0.96, 0.48, 0.0, 1.44)),
    ],
)
def test_cloud_vms_are_priced_per_instance_hour(
    vm: str, only_running: bool, expected: tuple[str | None, float, float, float, float]
) -> None:
    kind, *costs = priced(only_running)[vm]
    assert kind == expected[0]
    assert costs == pytest.approx(list(expected[1:]), abs=1e-9)


def test_a_resize_to_another_type_is_another_row() -> None:
    history = [
        rec("web-9", "aws", "2024-05-01T00:00:00", "2024-05-02T00:00:00", "t3.small"),
        rec("web-9", "aws", "2024-05-02T00:00:00", "2024-05-03T00:00:00", "t3.large"),
    ]
    book = PriceBook(base=PRICES, instance_hour=INSTANCE_HOUR)
    rows = price_month("2024-05", clip(history, month_period("2024-05"), now=NOW), book, {}, REGIONS)
    # 24 h at 0.0228 (eu-west-1's t3.small) = 0.5472; 24 h at 0.0832 = 1.9968.
    assert [(row.instance_type, round(row.cost, 9)) for row in rows] == [("t3.large", 1.9968), ("t3.small", 0.5472)]
