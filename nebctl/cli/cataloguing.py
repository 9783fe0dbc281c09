"""``nebctl market list|show|refresh``: the appliances of the marketplace catalogues.

The Marketplaces come from the manifests given with ``-f``, else from what the database recorded when they were
applied. Each is read through its driver (``catalogue`` by default: the index at its url or path, downloaded
copies kept with their HTTP validators under the state directory). Exit codes: 0, or 1 when a catalogue cannot
be read, an appliance is unknown, or (for list and refresh) an index has entries that cannot be read, which are
printed on stderr, each naming its entry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.core.families import Family
from nebctl.core.keys import Kind
from nebctl.core.quantities import format_quantity
from nebctl.drivers.errors import DriverError
from nebctl.drivers.types import Appliance, MarketplaceRef
from nebctl.schemas.models import Marketplace


def _marketplaces(app: AppContext, paths: Sequence[str]) -> dict[str, Marketplace]:
    if paths:
        from nebctl.cli.validating import load_manifests

        documents = load_manifests(paths).documents
        return {key.name: doc for key, doc in documents.items() if isinstance(doc, Marketplace)}
    from nebctl.cli.database import open_store

    found: dict[str, Marketplace] = {}
    for record in open_store(app).list_resources(kind=Kind.MARKETPLACE):
        if record.applied is None:
            continue
        spec = {k: v for k, v in record.applied.items() if k != "metadata"}
        document = {"apiVersion": "nebctl/v1", "kind": "Marketplace", "metadata": {"name": record.key.name}}
        found[record.key.name] = Marketplace.model_validate({**document, "spec": spec})
    return found


def _chosen(app: AppContext, paths: Sequence[str], name: str | None) -> list[Marketplace]:
    marketplaces = _marketplaces(app, paths)
    if name is None:
        if not marketplaces:
            where = "in the manifests" if paths else "recorded (apply one, or give its manifests with -f)"
            raise CliError(f"no Marketplace {where}")
        return [marketplaces[key] for key in sorted(marketplaces)]
    if name not in marketplaces:
        known = ", ".join(sorted(marketplaces)) or "none"
        raise CliError(f"no marketplace {name!r} (known: {known})")
    return [marketplaces[name]]


def _driver(app: AppContext, marketplace: Marketplace) -> tuple[Any, MarketplaceRef]:
    from nebctl.cli.session import open_registry
    from nebctl.controller.sourcing import marketplace_ref

    return open_registry(app).get(Family.MARKETPLACE, marketplace.spec.driver), marketplace_ref(marketplace)


def _problems(driver: Any, ref: MarketplaceRef) -> Sequence[str]:
    reader = getattr(driver, "problems", None)
    return list(reader(ref)) if callable(reader) else []


def _row(appliance: Appliance) -> dict[str, Any]:
    return {
        "name": appliance.name,
        "version": appliance.version,
        "os": appliance.os,
        "format": appliance.format,
        "size": appliance.size,
        "sha256": appliance.sha256,
        "source": appliance.source,
        "description": appliance.description,
        "importable": appliance.problem is None,
        "problem": appliance.problem,
    }


paths_option = click.option(
    "-f", "--filename", "paths", multiple=True, metavar="PATH", help="Manifests declaring the Marketplaces."
)
output_option = click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)


@click.group("market")
def market_group() -> None:
    """Marketplace catalogues and their appliances."""


@market_group.command("list")
@click.argument("marketplace", required=False)
@paths_option
@output_option
@pass_app
def list_command(app: AppContext, marketplace: str | None, paths: tuple[str, ...], output: str) -> None:
    """The appliances of MARKETPLACE (of every marketplace without one), newest version of each first."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for document in _chosen(app, paths, marketplace):
        driver, ref = _driver(app, document)
        try:
            appliances = driver.list(ref)
            problems += [f"marketplace {ref.name}: {problem}" for problem in _problems(driver, ref)]
        except DriverError as error:
            problems.append(str(error.message))
            continue
        rows += [{"marketplace": ref.name, **_row(appliance)} for appliance in appliances]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        table = Table("MARKETPLACE", "APPLIANCE", "VERSION", "OS", "FORMAT", "SIZE", "NOTE", box=None)
        for row in rows:
            size = format_quantity(row["size"]) if row["size"] is not None else "-"
            note = f"not importable: {row['problem']}" if row["problem"] else row["description"]
            table.add_row(
                row["marketplace"],
                row["name"],
                row["version"] or "-",
                row["os"] or "-",
                row["format"] or "-",
                size,
                note,
            )
        app.console.print(table)
    _fail_on(problems)


@market_group.command("show")
@click.argument("appliance", metavar="MARKETPLACE/APP")
@paths_option
@output_option
@pass_app
def show_command(app: AppContext, appliance: str, paths: tuple[str, ...], output: str) -> None:
    """Every version of one appliance, with its image's source and digest."""
    name, slash, app_name = appliance.partition("/")
    if not slash or not app_name:
        raise CliError(f"expected MARKETPLACE/APP, got {appliance!r}")
    app_name = app_name.split("@", 1)[0]
    (document,) = _chosen(app, paths, name)
    driver, ref = _driver(app, document)
    try:
        versions = [a for a in driver.list(ref) if a.name == app_name]
    except DriverError as error:
        raise CliError(error.message) from error
    if not versions:
        raise CliError(f"marketplace {name} has no appliance {app_name!r}")
    if output == "json":
        click.echo(json.dumps([_row(a) for a in versions], indent=2))
        return
    first = versions[0]
    click.echo(f"{name}/{first.name}: {first.description}")
    if first.os:
        click.echo(f"os: {first.os}")
    for item in versions:
        size = f"{item.size} bytes" if item.size is not None else "size not given"
        click.echo(f"\nversion {item.version or '(none)'}{'  (newest)' if item is first else ''}")
        click.echo(f"  source: {item.source}")
        click.echo(f"  format: {item.format or 'detected on import'}, {size}")
        click.echo(f"  sha256: {item.sha256 or '-'}")
        if item.problem:
            click.echo(f"  not importable: {item.problem}")


@market_group.command("refresh")
@click.argument("marketplace", required=False)
@paths_option
@pass_app
def refresh_command(app: AppContext, marketplace: str | None, paths: tuple[str, ...]) -> None:
    """Read the index of MARKETPLACE (of every marketplace without one) again now."""
    problems: list[str] = []
    for document in _chosen(app, paths, marketplace):
        driver, ref = _driver(app, document)
        refresh = getattr(driver, "refresh", None)
        if not callable(refresh):
            click.echo(f"{ref.name}: the {document.spec.driver} driver keeps no index to refresh")
            continue
        try:
            index = refresh(ref)
        except DriverError as error:
            problems.append(str(error.message))
            continue
        names = {appliance.name for appliance in index.appliances}
        click.echo(f"{ref.name}: {len(names)} appliance(s), {len(index.appliances)} version(s)")
        problems += [f"marketplace {ref.name}: {problem}" for problem in index.problems]
    _fail_on(problems)


def _fail_on(problems: Sequence[str]) -> None:
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        raise CliError(f"{len(problems)} problem(s) in the catalogues")


commands = [market_group]
