"""``nebctl quota set/list/delete``: limits on what a group's members or a namespace may hold (VMs, vCPUs,
memory, disk), enforced when a plan is made, by the CLI and the API alike. ``list`` shows the usage beside each
limit (``controller.quotas`` says how usage is measured)."""

from __future__ import annotations

import json
from typing import Any

import click

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.cli.database import open_store
from nebctl.cli.tables import human_bytes
from nebctl.core.quantities import QuantityError, parse_quantity
from nebctl.database.records import QuotaRecord

SCOPES = ("group", "namespace")


def _size(option: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = parse_quantity(text)
    except QuantityError as error:
        raise CliError(f"{option}: {error}") from None
    if value < 0:
        raise CliError(f"{option}: must not be negative")
    return value


@click.group("quota")
def quota_group() -> None:
    """Quotas of groups and namespaces: set, list (with usage), delete."""


@quota_group.command("set")
@click.argument("scope", type=click.Choice(SCOPES))
@click.argument("name")
@click.option("--vms", type=click.IntRange(0), help="Most VMs.")
@click.option("--vcpu", type=click.IntRange(0), help="Most vCPUs.")
@click.option("--memory", metavar="SIZE", help="Most memory (64Gi).")
@click.option("--disk", metavar="SIZE", help="Most disk (2Ti).")
@pass_app
def quota_set(
    app: AppContext,
    *,
    scope: str,
    name: str,
    vms: int | None,
    vcpu: int | None,
    memory: str | None,
    disk: str | None,
) -> None:
    """Set the quota of group or namespace NAME (replacing it whole; an option left out is no limit)."""
    if not name or len(name) > 128:
        raise CliError("NAME: give 1 to 128 characters")
    quota = QuotaRecord(scope, name, vms=vms, vcpu=vcpu, memory=_size("--memory", memory), disk=_size("--disk", disk))
    if (quota.vms, quota.vcpu, quota.memory, quota.disk) == (None, None, None, None):
        raise CliError("give at least one limit: --vms, --vcpu, --memory or --disk (quota delete removes one)")
    open_store(app).set_quota(quota)
    click.echo(f"quota of {scope} {name} set")


@quota_group.command("delete")
@click.argument("scope", type=click.Choice(SCOPES))
@click.argument("name")
@pass_app
def quota_delete(app: AppContext, scope: str, name: str) -> None:
    """Remove the quota of group or namespace NAME."""
    if not open_store(app).delete_quota(scope, name):
        raise CliError(f"no quota of {scope} {name}")
    click.echo(f"quota of {scope} {name} deleted")


@quota_group.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_app
def quota_list(app: AppContext, output: str) -> None:
    """Every quota, with the usage beside each limit."""
    from nebctl.controller.quotas import Usage, group_usage, members, namespace_usage

    store = open_store(app)
    quotas = store.list_quotas()
    by_namespace = namespace_usage(store)
    groups = members(store)
    document: list[dict[str, Any]] = []
    for q in quotas:
        used = (
            by_namespace.get(q.scope, Usage())
            if q.scope_type == "namespace"
            else group_usage(store, groups.get(q.scope, set()))
        )
        document.append(
            {
                "scope": q.scope_type,
                "name": q.scope,
                "vms": {"used": used.vms, "limit": q.vms},
                "vcpu": {"used": used.vcpu, "limit": q.vcpu},
                "memory": {"used": used.memory, "limit": q.memory},
                "disk": {"used": used.disk, "limit": q.disk},
            }
        )
    if output == "json":
        click.echo(json.dumps(document, indent=2))
        return
    if not document:
        click.echo("No quotas.")
        return

    def cell(entry: dict[str, Any], size: bool) -> str:
        show = human_bytes if size else str
        limit = entry["limit"]
        return f"{show(entry['used'])}/{show(limit) if limit is not None else '-'}"

    rows: list[tuple[str, ...]] = [
        (
            d["scope"],
            d["name"],
            cell(d["vms"], False),
            cell(d["vcpu"], False),
            cell(d["memory"], True),
            cell(d["disk"], True),
        )
        for d in document
    ]
    headers = ("SCOPE", "NAME", "VMS", "VCPU", "MEMORY", "DISK")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


commands: list[click.Command] = [quota_group]
