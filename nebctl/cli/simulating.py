"""``nebctl sim ...``: change the simulated fleet behind nebctl's back, and configure its latency and faults.

For demos, drills and tests: ``stop-vm``, ``delete-vm``, ``set-memory``, ``host-down`` and ``host-up`` make
drift that the next ``diff`` sees; ``fault`` and ``latency`` set what the sim driver suffers on each action;
``show`` prints the fleet. They act on the fleet file of the configuration (``drivers.sim.state_file``, else
``state_dir/sim.db``), the same one ``apply`` uses. The Python API behind them is ``nebctl.drivers.sim.SimFleet``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.table import Table

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.core.quantities import QuantityError, format_quantity, parse_quantity
from nebctl.drivers.errors import DriverError
from nebctl.drivers.sim import Distribution, Fault, FaultKind, Latency, SimFleet, open_fleet


@contextmanager
def _fleet(app: AppContext) -> Iterator[SimFleet]:
    try:
        fleet = open_fleet(app.settings)
    except DriverError as error:
        raise CliError(str(error)) from error
    try:
        yield fleet
    except DriverError as error:
        raise CliError(str(error)) from error
    finally:
        fleet.close()


@click.group("sim")
def sim_group() -> None:
    """Drive the simulated fleet: drift, faults, latency."""


host_option = click.option("--host", metavar="HOST", help="The VM's host, when its name is on several.")


def _vm_command(name: str, help_text: str, action: Callable[[SimFleet, str, str | None], None]) -> None:
    @sim_group.command(name, help=help_text)
    @click.argument("vm")
    @host_option
    @pass_app
    def command(app: AppContext, vm: str, host: str | None) -> None:
        with _fleet(app) as fleet:
            action(fleet, vm, host)
        click.echo(f"{name}: {vm}")


_vm_command("stop-vm", "Stop VM (name or uuid) as if powered off by hand.", lambda f, vm, h: f.stop_vm(vm, host=h))
_vm_command("delete-vm", "Remove VM (name or uuid) from its host.", lambda f, vm, h: f.delete_vm(vm, host=h))


def _object_command(what: str, help_text: str) -> None:
    @sim_group.command(f"delete-{what}", help=help_text)
    @click.argument("host")
    @click.argument("name")
    @pass_app
    def command(app: AppContext, host: str, name: str) -> None:
        with _fleet(app) as fleet:
            fleet.delete_object(what, host, name)
        click.echo(f"{what} {name} deleted on {host} behind nebctl's back")


_object_command("network", "Delete a network (and its leases) from a host, as if by hand.")
_object_command("datastore", "Delete a datastore (pool) from a host, as if by hand.")
_object_command("volume", "Delete a volume (an image's, a disk's) from a host, as if by hand.")
_object_command("sg", "Delete a security group's filter from a host, as if by hand.")


@sim_group.command("set-memory")
@click.argument("vm")
@click.argument("memory")
@host_option
@pass_app
def set_memory_command(app: AppContext, vm: str, memory: str, host: str | None) -> None:
    """Change the memory of VM to MEMORY (e.g. 4Gi)."""
    try:
        size = parse_quantity(memory)
    except QuantityError as error:
        raise CliError(f"memory {memory!r}: {error}") from error
    with _fleet(app) as fleet:
        fleet.set_memory(vm, size, host=host)
    click.echo(f"set-memory: {vm} = {format_quantity(size)}")


@sim_group.command("host-down")
@click.argument("host")
@click.option("--reason", default="taken down by nebctl sim", show_default=True)
@pass_app
def host_down_command(app: AppContext, host: str, reason: str) -> None:
    """Make HOST stop answering: probes report it in error, other calls fail as temporary."""
    with _fleet(app) as fleet:
        fleet.host_down(host, reason=reason)
    click.echo(f"host-down: {host}")


@sim_group.command("host-up")
@click.argument("host")
@pass_app
def host_up_command(app: AppContext, host: str) -> None:
    """Bring HOST back."""
    with _fleet(app) as fleet:
        fleet.host_up(host)
    click.echo(f"host-up: {host}")


@sim_group.command("fault")
@click.argument("action")
@click.argument("kind", type=click.Choice([k.value for k in FaultKind]))
@click.option("--probability", type=click.FloatRange(0, 1), help="Chance per call (default: every call).")
@click.option("--count", type=click.IntRange(min=1), help="Fail this many calls, then stop.")
@click.option("--host", help="Only on this host.")
@click.option("--duration", type=float, help="For hang: seconds before the call goes on (default: until cancelled).")
@click.option("--message", help="The error message.")
@pass_app
def fault_command(  # click passes options by keyword
    app: AppContext,
    *,
    action: str,
    kind: str,
    probability: float | None,
    count: int | None,
    host: str | None,
    duration: float | None,
    message: str | None,
) -> None:
    """Inject a fault on ACTION (family.action, family.* or *): temporary, permanent or hang."""
    fault = Fault(action, FaultKind(kind), host, probability, count, duration, message)
    with _fleet(app) as fleet:
        rule = fleet.set_fault(fault)
    click.echo(f"fault {rule}: {kind} on {action}")


@sim_group.command("clear-faults")
@click.argument("action", required=False)
@pass_app
def clear_faults_command(app: AppContext, action: str | None) -> None:
    """Remove the faults (of ACTION, or all)."""
    with _fleet(app) as fleet:
        removed = fleet.clear_faults(action)
    click.echo(f"removed {removed} fault(s)")


@sim_group.command("latency")
@click.argument("action")
@click.argument("distribution", type=click.Choice([d.value for d in Distribution]))
@click.argument("a", type=float)
@click.argument("b", type=float, default=0.0)
@click.option("--host", help="Only on this host.")
@pass_app
def latency_command(app: AppContext, *, action: str, distribution: str, a: float, b: float, host: str | None) -> None:
    """Set the latency of ACTION in seconds: fixed A, uniform A B, normal MEAN DEV, exponential MEAN."""
    with _fleet(app) as fleet:
        fleet.set_latency(Latency(action, Distribution(distribution), a, b, host))
    click.echo(f"latency: {action} {distribution} {a:g} {b:g}".rstrip())


@sim_group.command("clear-latency")
@click.argument("action", required=False)
@pass_app
def clear_latency_command(app: AppContext, action: str | None) -> None:
    """Remove the latencies (of ACTION, or all)."""
    with _fleet(app) as fleet:
        removed = fleet.clear_latency(action)
    click.echo(f"removed {removed} latency rule(s)")


@sim_group.command("show")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_app
def show_command(app: AppContext, output: str) -> None:
    """The fleet: hosts, their VMs, and the fault and latency rules."""
    with _fleet(app) as fleet:
        fleet_data = fleet.show()
    if output == "json":
        click.echo(json.dumps(fleet_data, indent=2))
        return
    table = Table(box=None, pad_edge=False, title=f"sim fleet {fleet_data['file']}")
    for column in ("HOST", "STATE", "CPUS", "MEMORY", "VM", "VM STATE", "VCPU", "VM MEMORY"):
        table.add_column(column)
    for name, host in fleet_data["hosts"].items():
        state = "down" if host["down"] else "up"
        first = [name, state, str(host["cpus"]), format_quantity(host["memory"])]
        if not host["vms"]:
            table.add_row(*first, "-", "", "", "")
        for vm in host["vms"]:
            table.add_row(*first, vm["name"], vm["state"], str(vm["vcpu"]), format_quantity(vm["memory"]))
            first = ["", "", "", ""]
    app.console.print(table)
    for rule in fleet_data["behaviours"]:
        click.echo("rule " + " ".join(f"{key}={value}" for key, value in rule.items()))


commands: list[click.Command] = [sim_group]
