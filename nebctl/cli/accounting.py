"""``nebctl accounting`` and ``nebctl showback``: usage history and its cost, from the placement records.

``accounting`` cuts the placement records to a period and prints them, or their sums by VM, host, namespace,
stack or user, as a table, CSV or JSON. ``showback`` prices a calendar month with the configuration's price
book, replaces that month's rows of the ``showback`` table with the result (so that billing can read a table),
and prints the sums. The arithmetic is in ``nebctl.accounting``; docs/accounting.md explains every figure.
"""

from __future__ import annotations

import csv
import gc
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from nebctl.accounting import pricing
from nebctl.accounting.cloudprices import region_of
from nebctl.accounting.usage import GROUPINGS, Period, Usage, clip, iso, month_of, month_period, parse_time, summarise
from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.cli.database import open_store
from nebctl.cli.tables import human_bytes, print_table
from nebctl.controller.metrics import host_labels
from nebctl.core.keys import Kind
from nebctl.core.settings import PricingSettings
from nebctl.database import ResourceRecord, ShowbackRow, Store

# The column a grouping's key prints under: oneacct's names where they mean the same.
KEY_COLUMNS = {"vm": "VM", "host": "HOSTNAME", "namespace": "NAMESPACE", "stack": "STACK", "user": "UNAME"}
RECORD_COLUMNS = (
    "NAMESPACE",
    "VM",
    "STACK",
    "UNAME",
    "HOSTNAME",
    "STATE",
    "REASON",
    "END_REASON",
    "START_TIME",
    "END_TIME",
    "OPEN",
    "HOURS",
    "CPU",
    "MEMORY",
    "DISK",
    "CPU_HOURS",
    "MEMORY_GIB_HOURS",
    "DISK_GIB_HOURS",
)
TOTAL_COLUMNS = ("RECORDS", "RUNNING_HOURS", "STOPPED_HOURS", "CPU_HOURS", "MEMORY_GIB_HOURS", "DISK_GIB_HOURS")
BILL_COLUMNS = (
    "RUNNING_HOURS",
    "STOPPED_HOURS",
    "CPU_HOURS",
    "MEMORY_GIB_HOURS",
    "DISK_GIB_HOURS",
    "CPU_COST",
    "MEMORY_COST",
    "DISK_COST",
    "COST",
)
DIGITS = 6  # hours and costs in CSV and JSON: to the micro-unit


def _round(value: float) -> float:
    return round(value, DIGITS)


def _record_row(usage: Usage) -> dict[str, Any]:
    return {
        "NAMESPACE": usage.namespace,
        "VM": usage.name,
        "STACK": usage.stack,
        "UNAME": usage.owner,
        "HOSTNAME": usage.host,
        "STATE": usage.state,
        "REASON": usage.reason,
        "END_REASON": usage.end_reason,
        "START_TIME": iso(usage.start),
        "END_TIME": iso(usage.end),
        "OPEN": usage.open,
        "HOURS": _round(usage.hours),
        "CPU": usage.vcpu,
        "MEMORY": usage.memory,
        "DISK": usage.disk,
        "CPU_HOURS": _round(usage.vcpu_hours),
        "MEMORY_GIB_HOURS": _round(usage.memory_gib_hours),
        "DISK_GIB_HOURS": _round(usage.disk_gib_hours),
    }


def _write(
    app: AppContext, output: str, columns: Sequence[str], rows: list[dict[str, Any]], meta: dict[str, Any]
) -> None:
    """Print ``rows`` as CSV (a header of ``columns``), JSON (``meta`` plus the rows, lower-case keys) or a table."""
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        click.echo(buffer.getvalue(), nl=False)
        return
    if output == "json":
        document = {**meta, "rows": [{k.lower(): v for k, v in row.items()} for row in rows]}
        click.echo(json.dumps(document, indent=2))
        return
    if not rows:
        click.echo("No usage in this period.")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right" if _numeric(rows, column) else "left")
    for row in rows:
        table.add_row(*(human_bytes(row[c]) if c in ("MEMORY", "DISK") else _cell(row[c]) for c in columns))
    print_table(app, table)


def _numeric(rows: list[dict[str, Any]], column: str) -> bool:
    return any(isinstance(row[column], int | float) and not isinstance(row[column], bool) for row in rows)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _period(start_text: str | None, end_text: str | None, now: datetime) -> Period:
    try:
        start = parse_time(start_text, option="--from") if start_text else month_period(month_of(now)).start
        end = parse_time(end_text, option="--to") if end_text else now
        return Period(start, end)
    except ValueError as error:
        raise CliError(str(error)) from None


@click.command("accounting")
@click.option("--from", "start_text", metavar="TIME", help="Start (ISO 8601, UTC). Default: this month's first day.")
@click.option("--to", "end_text", metavar="TIME", help="End, excluded (ISO 8601, UTC). Default: now.")
@click.option("--by", type=click.Choice(GROUPINGS), help="Sum by VM, host, namespace, stack or user.")
@click.option("-o", "--output", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@pass_app
def accounting_command(
    app: AppContext, start_text: str | None, end_text: str | None, by: str | None, output: str
) -> None:
    """Usage history: each VM placement (host, size, state) in the period, or their sums with --by.

    A record is cut to the period; one still open counts until now. Resizes, migrations, starts and stops
    split records, so each has one host, one size and one state.
    """
    now = datetime.now(UTC)
    period = _period(start_text, end_text, now)
    store = open_store(app)
    usages = clip(store.list_history(start=period.start, end=period.end), period, now=now)
    meta: dict[str, Any] = {"from": iso(period.start), "to": iso(min(period.end, max(now, period.start)))}
    if by is None:
        _write(app, output, RECORD_COLUMNS, [_record_row(u) for u in usages], meta)
        return
    rows = [
        {
            KEY_COLUMNS[by]: totals.key,
            "RECORDS": totals.records,
            "RUNNING_HOURS": _round(totals.running_hours),
            "STOPPED_HOURS": _round(totals.stopped_hours),
            "CPU_HOURS": _round(totals.vcpu_hours),
            "MEMORY_GIB_HOURS": _round(totals.memory_gib_hours),
            "DISK_GIB_HOURS": _round(totals.disk_gib_hours),
        }
        for totals in summarise(usages, by)
    ]
    _write(app, output, (KEY_COLUMNS[by], *TOTAL_COLUMNS), rows, {**meta, "by": by})


def price_book(settings: PricingSettings) -> pricing.PriceBook:
    """The configuration's prices as the pure pricing code takes them."""
    return pricing.PriceBook(
        base=pricing.Prices(settings.vcpu_hour, settings.memory_gib_hour, settings.disk_gib_hour),
        overrides=tuple(
            pricing.PriceOverride(
                host=o.host,
                labels=dict(o.labels),
                vcpu_hour=o.vcpu_hour,
                memory_gib_hour=o.memory_gib_hour,
                disk_gib_hour=o.disk_gib_hour,
            )
            for o in settings.overrides
        ),
        currency=settings.currency,
        only_running=settings.only_running,
        instance_hour=dict(settings.instance_hour),
    )


def compute_showback(store: Store, month: str, book: pricing.PriceBook, *, now: datetime) -> list[ShowbackRow]:
    """Price ``month`` (up to ``now``) from the placement records and replace its rows in the showback table.
    Host labels (for label price overrides) and cloud regions (for regional instance-hour prices) are those the
    Host records carry now."""
    period = month_period(month)
    hosts = store.list_resources(kind=Kind.HOST)
    labels = host_labels(hosts)
    # A large fleet's month is hundreds of thousands of small objects (tuples and lists, none in a cycle): the
    # cyclic collector, triggered by their allocation, would walk them again and again (a third of the time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        spans = store.history_spans(start=period.start, end=period.end)
        rows = pricing.price_spans(month, spans, book, labels, host_regions(hosts), now=now)
        del spans
        store.replace_showback(month, rows)
    finally:
        if collecting:
            gc.enable()
    return rows


def host_regions(records: Sequence[ResourceRecord]) -> dict[str, str | None]:
    """The region of each recorded cloud Host, from its URI (``ec2://eu-west-1``)."""
    regions: dict[str, str | None] = {}
    for record in records:
        uri = (record.applied or record.desired or {}).get("uri")
        if record.kind is Kind.HOST and isinstance(uri, str) and region_of(uri) is not None:
            regions[record.name] = region_of(uri)
    return regions


@click.command("showback")
@click.option("--month", "month_text", metavar="YYYY-MM", help="The calendar month (UTC). Default: this month.")
@click.option("--by", type=click.Choice(GROUPINGS), default="vm", show_default=True, help="Sum by this.")
@click.option("-o", "--output", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@pass_app
def showback_command(app: AppContext, month_text: str | None, by: str, output: str) -> None:
    """The cost of a month's usage, with the configuration's prices; stores it in the showback table.

    The month is recomputed from the placement records each time (the current month up to now) and its rows in
    the showback table are replaced.
    """
    now = datetime.now(UTC)
    month = month_text or month_of(now)
    try:
        period = month_period(month)
    except ValueError as error:
        raise CliError(str(error)) from None
    if period.start > now:
        raise CliError(f"--month {month}: that month has not begun")
    book = price_book(app.settings.pricing)
    rows = compute_showback(open_store(app), month, book, now=now)
    bills = pricing.bills(rows, by)
    table_rows = [
        {KEY_COLUMNS[by]: bill.key, **{column: _round(getattr(bill, _field(column))) for column in BILL_COLUMNS}}
        for bill in bills
    ]
    total = sum(row.cost for row in rows)
    meta = {
        "month": month,
        "from": iso(period.start),
        "to": iso(min(period.end, now)),
        "by": by,
        "currency": book.currency,
        "onlyRunning": book.only_running,
        "total": _round(total),
    }
    if output != "table":
        _write(app, output, (KEY_COLUMNS[by], *BILL_COLUMNS), table_rows, meta)
        return
    if not table_rows:
        click.echo(f"No usage in {month}.")
        return
    table = Table(box=None, header_style="bold", pad_edge=False, show_footer=True)
    table.add_column(KEY_COLUMNS[by], footer="TOTAL")
    for column in BILL_COLUMNS:
        footer = f"{total:.2f} {book.currency}" if column == "COST" else ""
        table.add_column(column.replace("_", " "), justify="right", footer=footer)
    for row in table_rows:
        table.add_row(*(_cell(row[column]) for column in (KEY_COLUMNS[by], *BILL_COLUMNS)))
    print_table(app, table)
    partial = " (so far)" if period.end > now else ""
    click.echo(f"{month}{partial}: {total:.2f} {book.currency}; stored in the showback table ({len(rows)} rows).")


def _field(column: str) -> str:
    """The ``Bill`` attribute behind a column: CPU_HOURS -> vcpu_hours."""
    name = column.lower()
    return "vcpu_hours" if name == "cpu_hours" else name


commands = [accounting_command, showback_command]
