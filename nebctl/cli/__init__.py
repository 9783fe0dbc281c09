"""The ``nebctl`` command line: global options and the registration of every command.

Each command lives in its own module of this package, listed in ``COMMANDS`` with its one-line help; a module
is imported only when one of its commands runs, so ``nebctl validate`` or ``nebctl --help`` do not pay for the
database layer, the drivers and the planner. The global options end up in an ``AppContext``
(``cli.app``) that commands receive with ``@pass_app``; nothing reads the environment or the
configuration outside of it.

Run as a program (the ``nebctl`` script, ``python -m nebctl``), the group also tunes Python's cyclic garbage
collector for a process whose objects mostly live as long as it does (``LazyGroup``); run in-process
(``CliRunner``, tests), it does not.
"""

from __future__ import annotations

import atexit
import gc
import importlib
from typing import Any

import click

from nebctl.cli.app import AppContext, LogFormat

_PACKAGE = "nebctl.cli"

# Command name -> (module defining it in its ``commands`` list, the short help shown by ``nebctl --help``).
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validating", "Check manifests: fields, types, references, duplicates, cycles, addresses."),
    "schema": ("validating", "Print or write the JSON Schemas of the manifests, for editors."),
    "diff": ("reconciling", "Show what apply would do, without doing it."),
    "apply": ("reconciling", "Make the infrastructure match the manifests."),
    "destroy": ("reconciling", "Delete everything a stack owns, in reverse dependency order."),
    "import": ("reconciling", "Adopt an existing live VM, network, datastore or image into a stack."),
    "recover": ("recovering", "Rebuild lost records from the ownership metadata on live objects."),
    "get": ("inspecting", "List what nebctl manages."),
    "describe": ("inspecting", "Everything known about one resource: spec, live status, actions, events."),
    "events": ("inspecting", "The event log: actions, state changes, drift, applies."),
    "hosts": ("monitoring", "Hosts: state, capacity, reserved, overcommit, allocation, usage, disk."),
    "top": ("monitoring", "VMs (or hosts) with live CPU, memory, disk and network rates."),
    "accounting": ("accounting", "Usage history of VM placements, or its sums by VM, host, namespace, stack, user."),
    "showback": ("accounting", "The priced usage of a month; stored in the showback table."),
    "drivers": ("drivering", "Installed drivers, their families and capabilities."),
    "market": ("cataloguing", "Marketplace catalogues: list and show their appliances, refresh their indexes."),
    "sim": ("simulating", "The simulated fleet: show it, change it behind nebctl's back, inject faults."),
    "serve": ("serving", "Keep the infrastructure converged continuously: watch, resync, monitor, heal."),
    "status": ("serving", "Sync status, revision and health of the stacks the service reconciles."),
    "sync": ("serving", "Ask the running service to sync a stack now."),
    "db": ("database", "Schema migrations of the state database."),
    "unlock": ("database", "Release the writers' lock left by a dead process."),
    "user": ("access", "Users of the API: add, list, passwd, disable, enable, delete."),
    "group": ("access", "Groups of users: list, add and remove members."),
    "token": ("access", "API bearer tokens: create (shown once), list, revoke."),
    "acl": ("access", "Access rules of the API: add, list, remove, and check who may do what."),
    "quota": ("quotas", "Quotas of groups and namespaces (VMs, vCPU, memory, disk): set, list with usage, delete."),
    "completion": ("completing", "Print the shell completion script for bash, zsh or fish."),
    "explain": ("explaining", "The fields of a kind, or of one field, with their descriptions."),
}
# Kept for plugins and tests that list the modules defining commands.
COMMAND_MODULES = tuple(dict.fromkeys(f"{_PACKAGE}.{module}" for module, _ in COMMANDS.values()))


class LazyGroup(click.Group):
    """A group whose commands are imported on first use; ``--help`` lists them from ``COMMANDS``."""

    _program = False  # set when called as the process's entry point

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The process's entry point: the collector's passes are paused while the command's modules are imported
        (hundreds of thousands of long-lived objects: the classes and functions of pydantic, SQLAlchemy and
        nebctl, each pass rescanning them all for nothing), those objects are then frozen (kept out of every
        later pass) and collection resumes as usual for the command's own work. At exit, what is still alive is
        frozen too, so that the interpreter's teardown does not walk it again: the process is ending and the
        system takes its memory back. Files, connections and locks are closed by the commands, not at teardown.
        """
        self._program = True
        gc.disable()
        atexit.register(gc.freeze)
        return super().__call__(*args, **kwargs)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        resolved = super().resolve_command(ctx, args)  # imports the command's module
        if self._program and not gc.isenabled():
            gc.freeze()
            # A command's own objects are mostly long-lived too (the manifests, the records, the live view: over
            # a million objects for 10,000 VMs): at the default threshold (700 allocations) the youngest
            # generation is collected thousands of times and the older ones rescan them all, a quarter of a
            # no-op diff. Collecting every 100,000 allocations still frees cycles of short-lived garbage soon.
            gc.set_threshold(100_000, 20, 10)
            gc.enable()
        return resolved

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"{_PACKAGE}.{entry[0]}")
        for command in module.commands:
            if command.name == cmd_name:
                assert isinstance(command, click.Command)
                return command
        raise LookupError(f"{entry[0]} does not define the command {cmd_name!r}")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from nebctl.cli.versioning import version_text

    click.echo(version_text())
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version (and the commit, when run from a git checkout) and exit.",
)
@click.option(
    "--db",
    "db_url",
    envvar="NEBCTL_DB",
    metavar="URL",
    help="Database URL (sqlite:///PATH, mysql+pymysql://..., postgresql+psycopg://...). "
    "Default: $NEBCTL_DB, then an SQLite file in the user's data directory.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Configuration file (YAML). Default: $XDG_CONFIG_HOME/nebctl/config.yaml when it exists.",
)
@click.option(
    "--log-format",
    type=click.Choice([f.value for f in LogFormat]),
    default=LogFormat.TEXT.value,
    show_default=True,
    help="Format of log lines on stderr.",
)
@click.option("-v", "--verbose", count=True, help="More log output; repeat for debug output.")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, config_path: str | None, log_format: str, verbose: int) -> None:
    """nebctl makes virtual infrastructure match the YAML manifests you declare.

    \b
    Typical use:
      nebctl validate -f manifests/      check manifests
      nebctl diff -f manifests/          show what would change
      nebctl apply -f manifests/ --yes   make it so
      nebctl get vm                      see what is there
    """
    ctx.obj = AppContext.create(
        db_url=db_url,
        config_path=config_path,
        log_format=LogFormat(log_format),
        verbosity=verbose,
        program=isinstance(ctx.command, LazyGroup) and ctx.command._program,
    )
