"""``nebctl get``, ``nebctl describe`` and ``nebctl events``: what nebctl knows, read from its database.

Read-only: these commands take no lock and call no driver, so they answer at once even while an apply runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo

import click
from ruamel.yaml import YAML

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.cli.completing import complete_kind, complete_name, complete_reference
from nebctl.cli.database import open_store
from nebctl.core.keys import Kind, ResourceKey, parse_kind
from nebctl.core.quantities import format_quantity
from nebctl.database import Store
from nebctl.database.records import ActionRecord, EventRecord, ObservationRecord, ResourceRecord
from nebctl.rendering.resources import (
    age,
    describe,
    masked,
    observation_for,
    observed_cell,
    record_view,
    status_cell,
    table,
)


def _local_zone() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def _vm_columns(record: ResourceRecord) -> list[str]:
    spec = record.applied or {}
    ips = ",".join(str(nic.get("ip")) for nic in spec.get("nics", []) if nic.get("ip"))
    memory = format_quantity(int(spec["memory"])) if spec.get("memory") else "-"
    return [str(spec.get("vcpu", "-")), memory, ips or "-"]


@click.command("get")
@click.argument("kind_text", metavar="[KIND]", required=False, shell_complete=complete_kind)
@click.argument("name", required=False, shell_complete=complete_name)
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
    store = open_store(app)
    records = store.list_resources(stack=stack, kind=kind)
    if name:
        records = [r for r in records if r.name == name]
        if not records:
            raise CliError(f"{kind.short if kind else 'resource'}/{name} not found")
    stored = store.list_observations() if records else {}  # a row per host, and per VM that differs
    observations = {record.key: observation_for(record, stored) for record in records}
    if output == "json":
        views = [record_view(r, observations.get(r.key)) for r in records]
        click.echo(json.dumps(views, indent=2, default=str))
        return
    if output == "yaml":
        yaml = YAML()
        yaml.default_flow_style = False
        yaml.dump([record_view(r, observations.get(r.key)) for r in records], app.console.file)
        return
    if not records:
        click.echo("No resources found.")
        return
    now = datetime.now(UTC)
    vms_only = kind is Kind.VIRTUAL_MACHINE
    headers = ["KIND/NAME", "NAMESPACE", "STACK", "STATUS", "HOST"]
    headers += [*(["VCPU", "MEMORY", "IP"] if vms_only else []), "OBSERVED", "AGE"]
    rows: list[list[str]] = []
    for record in sorted(records, key=lambda r: (r.kind.value, r.namespace, r.name)):
        observation = observations.get(record.key)
        rows.append(
            [
                str(ResourceKey.of(record.kind, record.name, record.namespace)).split("/", 1)[-1]
                if record.namespace != "default"
                else f"{record.kind.short}/{record.name}",
                record.namespace,
                record.stack,
                status_cell(record, observation, now),
                record.host or "-",
                *(_vm_columns(record) if vms_only else []),
                observed_cell(record, observation, now),
                age(record.created_at, now),
            ]
        )
    click.echo(table(headers, rows), nl=False)


def _event_line(event: EventRecord) -> str:
    moment = event.time.strftime("%Y-%m-%d %H:%M:%S") if event.time else "-"
    subject = f"{Kind(event.kind).short}/{event.name}" if event.kind and event.name else "-"
    return f"{moment}  {event.severity:<7} {event.type:<20} {subject:<28} {event.message}"


@click.command("describe")
@click.argument("reference", metavar="KIND/NAME", shell_complete=complete_reference)
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
    actions: list[ActionRecord] = []
    for apply in store.list_applies(stack=record.stack, limit=5):
        actions += [
            action
            for action in store.actions_of(apply.id)
            if (action.kind, action.namespace, action.name) == (key.kind, key.namespace, key.name)
        ]
        if len(actions) >= 20:
            break
    rows = {row.key: row for row in (store.get_observation(key), _host_observation(store, record)) if row}
    page = describe(
        record,
        observation_for(record, rows),
        actions=actions,
        events=store.list_events(key=key, limit=20, newest=True),
        now=datetime.now(UTC),
        tz=_local_zone(),
    )
    click.echo(page, nl=False)


def _host_observation(store: Store, record: ResourceRecord) -> ObservationRecord | None:
    host = record.host or (record.applied or {}).get("host")
    if record.kind is not Kind.VIRTUAL_MACHINE or not host:
        return None
    return store.get_observation(ResourceKey(Kind.HOST, "default", str(host)))


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
