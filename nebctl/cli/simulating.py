"""``nebctl sim ...``: change the simulated fleet behind nebctl's back, and configure its latency and faults.

For demos, drills and tests: ``stop-vm``, ``delete-vm``, ``set-memory``, ``host-down`` and ``host-up`` make
drift that the next ``diff`` sees, as do ``delete-network`` (``-datastore``, ``-volume``, ``-sg``) and
``change-network`` (``-datastore``, ``-volume``, ``-sg``) for the objects of the other kinds; ``fault`` and
``latency`` set what the sim driver suffers on each action;
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
from nebctl.drivers.sim import Distribution, Fault, FaultKind, Latency, SimFleet, open_fleet, tampering
from nebctl.drivers.types import SecurityRuleDefinition


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


@sim_group.command("change-network")
@click.argument("host")
@click.argument("name")
@click.option("--mode", type=click.Choice(tampering.NETWORK_MODES), help="Another mode.")
@click.option("--cidr", help="Another address block, such as 10.9.0.0/24.")
@click.option("--gateway", help="Another gateway address.")
@click.option("--range", "span", metavar="FIRST-LAST", help="Another DHCP range, such as 10.9.0.10-10.9.0.99.")
@click.option("--bridge", help="Another host bridge (what a bridge-mode network attaches to).")
@click.option("--mtu", metavar="BYTES|default", help="Another MTU, or 'default' for the driver's.")
@click.option("--dns", metavar="ADDR[,ADDR...]|none", help="Other DNS servers, comma-separated, or 'none'.")
@pass_app
def change_network_command(  # click passes options by keyword
    app: AppContext,
    *,
    host: str,
    name: str,
    mode: str | None,
    cidr: str | None,
    gateway: str | None,
    span: str | None,
    bridge: str | None,
    mtu: str | None,
    dns: str | None,
) -> None:
    """Change network NAME on HOST (its mode, addresses, DHCP range, bridge, MTU or DNS servers), as if by
    hand."""
    first = last = None
    if span is not None:
        first, dash, last = span.partition("-")
        if not dash or not first or not last:
            raise CliError(f"--range {span!r}: expected FIRST-LAST, such as 10.9.0.10-10.9.0.99")
    size: int | tampering.Unset | None = tampering.UNSET
    if mtu is not None:
        if mtu != "default" and not mtu.isdigit():
            raise CliError(f"--mtu {mtu!r}: expected a number of bytes, such as 9000, or 'default'")
        size = None if mtu == "default" else int(mtu)
    servers = None if dns is None else [] if dns == "none" else [part.strip() for part in dns.split(",")]
    _require(
        mode, cidr, gateway, span, bridge, mtu, dns, what="--mode, --cidr, --gateway, --range, --bridge, --mtu or --dns"
    )
    with _fleet(app) as fleet:
        tampering.change_network(
            fleet,
            host,
            name,
            mode=mode,
            cidr=cidr,
            gateway=gateway,
            first=first,
            last=last,
            bridge=bridge,
            mtu=size,
            dns=servers,
        )
    click.echo(f"network {name} changed on {host} behind nebctl's back")


@sim_group.command("change-sg")
@click.argument("host")
@click.argument("name")
@click.option(
    "--rule",
    "rules",
    multiple=True,
    metavar="'DIRECTION PROTOCOL [PORTS [CIDR]]'",
    help="A rule of the new set, such as 'in tcp 22,80 10.0.0.0/8' (PORTS 'all' for every port); repeatable.",
)
@click.option("--no-rules", is_flag=True, help="Leave the filter without rules.")
@pass_app
def change_sg_command(app: AppContext, host: str, name: str, rules: tuple[str, ...], no_rules: bool) -> None:
    """Replace the rules of security group filter NAME on HOST (nebctl-sg-GROUP), as if by hand."""
    if not rules and not no_rules:
        raise CliError("change-sg: give the new rules (--rule, repeatable) or --no-rules")
    parsed = [_rule(text) for text in rules]
    with _fleet(app) as fleet:
        tampering.change_security_group(fleet, host, name, parsed)
    click.echo(f"security group {name} changed on {host} behind nebctl's back")


@sim_group.command("change-datastore")
@click.argument("host")
@click.argument("name")
@click.option("--path", help="Another path.")
@click.option("--type", "kind", help="Another pool type.")
@pass_app
def change_datastore_command(app: AppContext, host: str, name: str, path: str | None, kind: str | None) -> None:
    """Point datastore (pool) NAME on HOST at another path, or give it another type, as if by hand."""
    _require(path, kind, what="--path or --type")
    with _fleet(app) as fleet:
        tampering.change_datastore(fleet, host, name, path=path, type=kind)
    click.echo(f"datastore {name} changed on {host} behind nebctl's back")


@sim_group.command("change-volume")
@click.argument("host")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(tampering.VOLUME_FORMATS), help="Another format.")
@click.option("--size", help="Another virtual size, such as 4Gi.")
@pass_app
def change_volume_command(app: AppContext, host: str, name: str, fmt: str | None, size: str | None) -> None:
    """Put another volume in the place of volume NAME on HOST (another format or size), as if by hand."""
    _require(fmt, size, what="--format or --size")
    capacity = None
    if size is not None:
        try:
            capacity = parse_quantity(size)
        except QuantityError as error:
            raise CliError(f"--size {size!r}: {error}") from error
    with _fleet(app) as fleet:
        tampering.change_volume(fleet, host, name, format=fmt, capacity=capacity)
    click.echo(f"volume {name} changed on {host} behind nebctl's back")


def _require(*values: object, what: str) -> None:
    if all(value is None for value in values):
        raise CliError(f"nothing to change: give {what}")


def _rule(text: str) -> SecurityRuleDefinition:
    """``in tcp 22,80 10.0.0.0/8``: direction, protocol, ports (``all`` or none for every port), CIDR."""
    words = text.split()
    if not 2 <= len(words) <= 4 or words[0] not in ("in", "out") or words[1] not in ("tcp", "udp", "icmp", "any"):
        raise CliError(f"--rule {text!r}: expected 'DIRECTION PROTOCOL [PORTS [CIDR]]', such as 'in tcp 22 0.0.0.0/0'")
    ports = () if len(words) < 3 or words[2] == "all" else tuple(words[2].split(","))
    cidr = words[3] if len(words) == 4 else "0.0.0.0/0"
    return SecurityRuleDefinition(direction=words[0], protocol=words[1], ports=ports, cidr=cidr)


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
