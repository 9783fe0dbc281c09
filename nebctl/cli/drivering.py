"""``nebctl drivers``: the installed drivers, their families and capabilities.

Lists what the registry knows: built-ins (sim, exec, libvirt when its module imports) and plugins of the
entry-point group ``nebctl.drivers``. A driver that cannot be loaded is listed as unavailable with the reason,
so a missing libvirt-python is visible rather than silent.
"""

from __future__ import annotations

import json

import click
from rich.table import Table

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.drivers.errors import RegistrationError
from nebctl.drivers.registry import build_registry


@click.command("drivers")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_app
def drivers_command(app: AppContext, output: str) -> None:
    """List drivers by family, with their capabilities."""
    try:
        registry = build_registry(app.settings)
    except RegistrationError as error:
        raise CliError(str(error)) from error
    try:
        infos = registry.infos()
    finally:
        registry.close()
    if output == "json":
        document = [
            {
                "family": info.family.value,
                "name": info.name,
                "available": info.available,
                "capabilities": sorted(info.capabilities),
                "origin": info.origin,
                "problem": info.problem,
            }
            for info in infos
        ]
        click.echo(json.dumps(document, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("FAMILY", "NAME", "STATUS", "CAPABILITIES"):
        table.add_column(column)
    for info in infos:
        status = "available" if info.available else f"unavailable: {info.problem}"
        table.add_row(info.family.value, info.name, status, ", ".join(sorted(info.capabilities)))
    app.console.print(table)


commands: list[click.Command] = [drivers_command]
