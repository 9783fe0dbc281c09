"""``nebctl hosts`` and ``nebctl top``: hosts with capacity, allocation and usage; VMs with live metrics.

Both read the records and the newest monitoring samples from the database (``controller.metrics`` computes
the figures), so they answer at once and take no lock. Samples come from every ``diff`` and ``apply`` and from
the service's monitoring loop; ``top --probe`` probes the recorded hosts itself on each refresh, through the
same path (``controller.sampling``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.table import Table
from ruamel.yaml import YAML

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.cli.database import open_store
from nebctl.cli.tables import human_bytes, print_table
from nebctl.controller.metrics import HostTop, VMView, host_tops, host_views, vm_views
from nebctl.rendering.hosts import host_document, jsonable

# How far back ``top`` looks for the two newest samples of each VM (older ones give no rate: not live).
RATE_WINDOW = timedelta(minutes=10)
SORTS = ("cpu", "memory", "disk", "net", "name", "host")


def _bytes(value: float | None) -> str:
    return human_bytes(value)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{human_bytes(value)}/s"


def _number(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _emit(app: AppContext, output: str, documents: list[dict[str, Any]]) -> bool:
    """Print ``documents`` as JSON or YAML when asked; False for a table."""
    if output == "json":
        click.echo(json.dumps(documents, indent=2))
        return True
    if output == "yaml":
        yaml = YAML()
        yaml.default_flow_style = False
        yaml.dump(documents, app.console.file)
        return True
    return False


@click.command("hosts")
@click.option(
    "-o", "--output", type=click.Choice(["table", "wide", "json", "yaml"]), default="table", show_default=True
)
@pass_app
def hosts_command(app: AppContext, output: str) -> None:
    """Hosts: state, last probe, CPU and memory capacity, reserved, overcommit, allocated, free, usage, disk.

    CPU figures are CPUs (allocated: vCPUs); free = (capacity - reserved) x overcommit - allocated. `-o wide`
    adds the labels and the custom probe attributes.
    """
    store = open_store(app)
    views = host_views(store.list_resources(), store.latest_host_samples())
    if _emit(app, output, [host_document(v) for v in views]):
        return
    if not views:
        click.echo("No hosts found.")
        return
    now = datetime.now(UTC)
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = ["NAME", "STATE", "PROBED", "VMS", "CPU", "RSV", "OVC", "ALLOC", "FREE", "LOAD"]
    columns += ["MEMORY", "RSV", "OVC", "ALLOC", "FREE", "USED", "DISK", "DISK FREE"]
    if output == "wide":
        columns += ["LABELS", "ATTRIBUTES"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("NAME", "STATE", "PROBED") else "right")
    for view in views:
        cpu, memory = view.cpu, view.memory
        known = view.cpu_load is not None
        row = [
            view.name,
            view.state if view.error is None else f"{view.state}: {view.error}",
            _age(view.last_probe, now),
            str(view.vms),
            _number(cpu.total) if known else "-",
            _number(cpu.reserved),
            _number(cpu.overcommit),
            _number(cpu.allocated),
            _number(cpu.free) if known else "-",
            f"{view.cpu_load * 100:.0f}%" if view.cpu_load is not None else "-",
            _bytes(memory.total) if known else "-",
            _bytes(memory.reserved),
            _number(memory.overcommit),
            _bytes(memory.allocated),
            _bytes(memory.free) if known else "-",
            _bytes(view.memory_used),
            _bytes(view.disk_total),
            _bytes(None if view.disk_total is None or view.disk_used is None else view.disk_total - view.disk_used),
        ]
        if output == "wide":
            row.append(",".join(f"{k}={v}" for k, v in sorted(view.labels.items())) or "-")
            row.append(",".join(f"{k}={v}" for k, v in sorted(view.attributes.items())) or "-")
        table.add_row(*row)
    print_table(app, table)


# --- top -------------------------------------------------------------------------------------------------------


def _parse_labels(texts: Sequence[str]) -> dict[str, str]:
    labels = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise CliError(f"--label {text!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def _sort_vms(views: list[VMView], sort: str) -> list[VMView]:
    if sort == "name":
        return sorted(views, key=lambda v: (v.namespace, v.name))
    if sort == "host":
        return sorted(views, key=lambda v: (v.host or "", v.namespace, v.name))
    metrics: dict[str, Callable[[VMView], float | None]] = {
        "cpu": lambda v: v.cpu,
        "memory": lambda v: v.memory_used,
        "disk": lambda v: v.disk_rate,
        "net": lambda v: v.net_rate,
    }
    metric = metrics[sort]
    # Highest first; VMs without the figure last, by name.
    return sorted(views, key=lambda v: (metric(v) is None, -(metric(v) or 0), v.namespace, v.name))


def _vm_table(views: Sequence[VMView], now: datetime) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ["VM", "NAMESPACE", "STACK", "HOST", "STATE", "CPU%", "MEM USED", "MEMORY"]:
        table.add_column(column, justify="right" if column in ("CPU%", "MEM USED", "MEMORY") else "left")
    for column in ["DISK READ", "DISK WRITE", "NET RX", "NET TX", "SAMPLED"]:
        table.add_column(column, justify="right")
    for view in views:
        table.add_row(
            view.name,
            view.namespace,
            view.stack,
            view.host or "-",
            view.state,
            "-" if view.cpu is None else f"{view.cpu:.1f}",
            _bytes(view.memory_used),
            _bytes(view.memory),
            _rate(view.disk_read_rate),
            _rate(view.disk_write_rate),
            _rate(view.net_rx_rate),
            _rate(view.net_tx_rate),
            _age(view.sampled_at, now),
        )
    return table


def _host_table(tops: Sequence[HostTop]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ["HOST", "STATE", "VMS", "CPUS", "LOAD", "VM CPU%", "MEM USED", "MEMORY"]:
        table.add_column(column, justify="left" if column in ("HOST", "STATE") else "right")
    for column in ["DISK READ", "DISK WRITE", "NET RX", "NET TX"]:
        table.add_column(column, justify="right")
    for top in tops:
        table.add_row(
            top.name,
            top.state,
            str(top.vms),
            "-" if top.cpus is None else str(top.cpus),
            "-" if top.cpu_load is None else f"{top.cpu_load * 100:.0f}%",
            f"{top.vm_cpu:.1f}",
            _bytes(top.memory_used),
            _bytes(top.memory_total),
            _rate(top.disk_read_rate),
            _rate(top.disk_write_rate),
            _rate(top.net_rx_rate),
            _rate(top.net_tx_rate),
        )
    return table


def _probe(app: AppContext) -> None:
    """Probe every recorded host now and record the samples (``top --probe``), as ``diff`` does."""
    from nebctl.cli.session import open_registry
    from nebctl.controller.observing import known_hosts, observe
    from nebctl.controller.reaping import ProgramRecorder
    from nebctl.controller.sampling import record_observation

    store = open_store(app)
    records = {record.key: record for record in store.list_resources()}
    live = observe(
        known_hosts({}, records),
        open_registry(app),
        parallelism=app.settings.parallelism,
        programs=ProgramRecorder(store),
    )
    record_observation(store, live, records)


def _snapshot(
    app: AppContext, *, what: str, sort: str, host: str | None, stack: str | None, labels: dict[str, str]
) -> tuple[list[VMView], list[HostTop]]:
    store = open_store(app)
    records = store.list_resources()
    now = datetime.now(UTC)
    # The two newest samples of each VM within the window give its rates; the newest of all (however old)
    # gives its state and use.
    recent = store.recent_vm_samples(now - RATE_WINDOW)
    seen = {(sample.namespace, sample.name) for sample in recent}
    older = [sample for key, sample in store.latest_vm_samples().items() if key not in seen]
    vms = vm_views(records, sorted([*older, *recent], key=lambda sample: sample.time))
    vms = [
        v
        for v in vms
        if (host is None or v.host == host)
        and (stack is None or v.stack == stack)
        and all(v.labels.get(k) == value for k, value in labels.items())
    ]
    tops: list[HostTop] = []
    if what == "hosts":
        hosts = [h for h in host_views(records, store.latest_host_samples()) if host is None or h.name == host]
        tops = host_tops(hosts, vms)
        keys: dict[str, Callable[[HostTop], float]] = {
            "cpu": lambda t: t.vm_cpu,
            "memory": lambda t: t.memory_used or 0,
            "disk": lambda t: t.disk_read_rate + t.disk_write_rate,
            "net": lambda t: t.net_rx_rate + t.net_tx_rate,
        }
        key: Callable[[HostTop], float] = keys.get(sort, lambda t: 0.0)  # by name: all tie, the name decides
        tops = sorted(tops, key=lambda t: (-key(t), t.name))
    return _sort_vms(vms, sort), tops


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _document(value: Any) -> dict[str, Any]:
    """A view as JSON: camelCase keys (as ``hosts`` and ``get``), times in ISO 8601."""
    document = {_camel(key): item for key, item in asdict(value).items()}
    result: dict[str, Any] = jsonable(document)
    return result


@click.command("top")
@click.argument("what", type=click.Choice(["vms", "hosts"]), default="vms", required=False)
@click.option("--sort", type=click.Choice(SORTS), default="cpu", show_default=True, help="Order, highest first.")
@click.option("--host", help="Only VMs on this host (or only this host).")
@click.option("--stack", help="Only VMs of this stack.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Only VMs with this label (repeatable).")
@click.option("--watch", is_flag=True, help="Refresh the table until interrupted (Ctrl-C).")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--count", type=int, default=None, help="With --watch: stop after this many refreshes.")
@click.option("--probe", is_flag=True, help="Probe the hosts before each refresh (without a running service).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_app
def top_command(
    app: AppContext,
    *,
    what: str,
    sort: str,
    host: str | None,
    stack: str | None,
    labels: tuple[str, ...],
    watch: bool,
    interval: float,
    count: int | None,
    probe: bool,
    output: str,
) -> None:
    """VMs (or `top hosts`: hosts) with live CPU, memory, disk and network rates from monitoring samples.

    Rates are the growth of each counter between the two newest samples of the VM.
    """
    wanted = _parse_labels(labels)
    if interval <= 0:
        raise CliError("--interval must be more than 0 seconds")
    if count is not None and count < 1:
        raise CliError("--count must be at least 1")
    if watch and output == "json":
        raise CliError("--watch shows a table; leave out -o json")

    def render() -> Any:
        if probe:
            _probe(app)
        vms, tops = _snapshot(app, what=what, sort=sort, host=host, stack=stack, labels=wanted)
        now = datetime.now(UTC)
        if output == "json":
            return [_document(t) for t in tops] if what == "hosts" else [_document(v) for v in vms]
        return _host_table(tops) if what == "hosts" else _vm_table(vms, now)

    if not watch:
        rendered = render()
        if output == "json":
            click.echo(json.dumps(rendered, indent=2))
        else:
            print_table(app, rendered)
        return
    from rich.live import Live

    refreshes = 0
    try:
        with Live(render(), console=app.console, auto_refresh=False) as live:
            refreshes = 1
            while count is None or refreshes < count:
                time.sleep(interval)
                live.update(render(), refresh=True)
                refreshes += 1
    except KeyboardInterrupt:
        pass


commands = [hosts_command, top_command]
