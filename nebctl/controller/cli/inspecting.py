"""``nebctl get``, ``nebctl describe`` and ``nebctl events``: what nebctl knows, read from its database.

Read-only: these commands take no lock and call no driver, so they answer at once even while an apply runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table
from ruamel.yaml import YAML

from nebctl.controller.cli.app import AppContext, CliError, pass_app
from nebctl.controller.cli.database import open_store
from nebctl.database.records import EventRecord, ResourceRecord
from nebctl.reconcilers.identity import deposed_of
from nebctl.schemas.keys import Kind, ResourceKey, parse_kind
from nebctl.schemas.quantities import format_quantity

SECRET_PATHS = {"cloudInit", "env"}


def _age(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def masked(spec: Any) -> Any:
    """A spec fit to print: secrets replaced by ``(sensitive)``."""
    if isinstance(spec, dict):
        return {k: "(sensitive)" if k in SECRET_PATHS and v else masked(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [masked(item) for item in spec]
    return spec


def _record_view(record: ResourceRecord) -> dict[str, Any]:
    # The applied document holds the resource's labels and annotations under ``metadata``: shown apart.
    applied = dict(record.applied) if record.applied is not None else None
    metadata = applied.pop("metadata", {}) if applied is not None else {}
    return {
        "kind": record.kind.value,
        "namespace": record.namespace,
        "name": record.name,
        "stack": record.stack,
        "labels": metadata.get("labels", {}),
        "annotations": metadata.get("annotations", {}),
        "status": record.status,
        "host": record.host,
        "generation": record.generation,
        "live": masked(record.live),
        "spec": masked(applied),
        "updatedAt": record.updated_at.isoformat() if record.updated_at else None,
    }


def _vm_columns(record: ResourceRecord) -> list[str]:
    spec = record.applied or {}
    ips = ",".join(str(nic.get("ip")) for nic in spec.get("nics", []) if nic.get("ip"))
    memory = format_quantity(int(spec["memory"])) if spec.get("memory") else "-"
    return [str(spec.get("vcpu", "-")), memory, ips or "-"]


@click.command("get")
@click.argument("kind_text", metavar="[KIND]", required=False)
@click.argument("name", required=False)
@click.option("--stack", help="Only resources of this stack.")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True)
@pass_app
def get_command(app: AppContext, kind_text: str | None, name: str | None, stack: str | None, output: str) -> None:
    """List what nebctl manages (all kinds, or one: vm, network, image, host...). Exits 1 if NAME is not found."""
    kind = None
    if kind_text:
        try:
            kind = parse_kind(kind_text)
        except ValueError as error:
            raise CliError(str(error)) from None
    records = open_store(app).list_resources(stack=stack, kind=kind)
    if name:
        records = [r for r in records if r.name == name]
        if not records:
            raise CliError(f"{kind.short if kind else 'resource'}/{name} not found")
    if output == "json":
        click.echo(json.dumps([_record_view(r) for r in records], indent=2, default=str))
        return
    if output == "yaml":
        yaml = YAML()
        yaml.default_flow_style = False
        yaml.dump([_record_view(r) for r in records], app.console.file)
        return
    if not records:
        click.echo("No resources found.")
        return
    vms_only = kind is Kind.VIRTUAL_MACHINE
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in [
        "KIND/NAME",
        "NAMESPACE",
        "STACK",
        "STATUS",
        "HOST",
        *(["VCPU", "MEMORY", "IP"] if vms_only else []),
        "AGE",
    ]:
        table.add_column(column)
    for record in sorted(records, key=lambda r: (r.kind.value, r.namespace, r.name)):
        extra = _vm_columns(record) if vms_only else []
        table.add_row(
            str(ResourceKey.of(record.kind, record.name, record.namespace)).split("/", 1)[-1]
            if record.namespace != "default"
            else f"{record.kind.short}/{record.name}",
            record.namespace,
            record.stack,
            record.status,
            record.host or "-",
            *extra,
            _age(record.created_at),
        )
    app.console.print(table)


def _event_line(event: EventRecord) -> str:
    moment = event.time.strftime("%Y-%m-%d %H:%M:%S") if event.time else "-"
    subject = f"{Kind(event.kind).short}/{event.name}" if event.kind and event.name else "-"
    return f"{moment}  {event.severity:<7} {event.type:<20} {subject:<28} {event.message}"


@click.command("describe")
@click.argument("reference", metavar="KIND/NAME")
@pass_app
def describe_command(app: AppContext, reference: str) -> None:
    """Everything known about one resource: spec, live status, last actions, events. Exits 1 if not found."""
    try:
        key = ResourceKey.parse(reference)
    except ValueError as error:
        raise CliError(str(error)) from None
    store = open_store(app)
    record = store.get_resource(key)
    if record is None:
        raise CliError(f"{key} not found")
    view = _record_view(record)
    click.echo(f"Name:        {key}")
    click.echo(f"Stack:       {record.stack}")
    click.echo(f"Status:      {record.status}")
    click.echo(f"Host:        {record.host or '-'}")
    click.echo(f"Generation:  {record.generation}")
    click.echo(f"Updated:     {view['updatedAt']}")
    owner = deposed_of(key, record.live)
    if owner is not None:
        click.echo(f"Deposed:     the old VM of {owner}, replaced create-first; deleted once its replacement runs")
    yaml = YAML()
    yaml.default_flow_style = False
    click.echo("Spec (last applied):")
    yaml.dump(view["spec"] or {}, _Indented(app))
    click.echo("Live:")
    yaml.dump(view["live"] or {}, _Indented(app))
    click.echo("Last actions:")
    shown = 0
    for apply in store.list_applies(stack=record.stack, limit=5):
        for action in store.actions_of(apply.id):
            if (action.kind, action.namespace, action.name) == (key.kind, key.namespace, key.name):
                why = f": {action.error}" if action.error else ""
                click.echo(f"  #{apply.id} {action.action_id} {action.state} (attempts {action.attempts}){why}")
                shown += 1
        if shown >= 20:
            break
    if not shown:
        click.echo("  (none)")
    click.echo("Events:")
    events = store.list_events(key=key, limit=20, newest=True)
    for event in events:
        click.echo("  " + _event_line(event))
    if not events:
        click.echo("  (none)")


class _Indented:
    """A write-only stream that indents what ruamel.yaml dumps."""

    def __init__(self, app: AppContext) -> None:
        self.app = app

    def write(self, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode()
        click.echo("".join("  " + line if line.strip() else line for line in text.splitlines(keepends=True)), nl=False)


@click.command("events")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until interrupted.")
@click.option("--stack", help="Only events of this stack.")
@click.option("-n", "--limit", type=click.IntRange(1, 100000), default=50, show_default=True, help="Events shown.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_app
def events_command(app: AppContext, follow: bool, stack: str | None, limit: int, output: str) -> None:
    """The event log: actions, state changes, drift, applies."""
    store = open_store(app)

    def show(events: Sequence[EventRecord]) -> None:
        for event in events:
            if output == "json":
                click.echo(
                    json.dumps(
                        {
                            "id": event.id,
                            "time": event.time.isoformat() if event.time else None,
                            "type": event.type,
                            "severity": str(event.severity),
                            "kind": event.kind.value if event.kind else None,
                            "namespace": event.namespace,
                            "name": event.name,
                            "stack": event.stack,
                            "message": event.message,
                            "data": masked(event.data),
                        }
                    )
                )
            else:
                click.echo(_event_line(event))

    events = store.list_events(stack=stack, limit=limit, newest=True)
    show(events)
    last = events[-1].id if events else 0
    while follow:
        time.sleep(1.0)
        newer = store.list_events(after_id=last, stack=stack, limit=1000)
        show(newer)
        if newer:
            last = newer[-1].id


commands: list[click.Command] = [get_command, describe_command, events_command]
