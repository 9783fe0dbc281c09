"""The ``nebctl`` command line: global options (SPEC section 2) and the registration of every command.

Each command lives in its own module of this package and is added to ``main`` by ``_register_commands``. The
global options end up in an ``AppContext`` (``controller.cli.app``) that commands receive with
``@pass_app``; nothing reads the environment or the configuration outside of it.
"""

from __future__ import annotations

import importlib

import click

from nebctl import __version__
from nebctl.controller.cli.app import AppContext, LogFormat

# Modules that define commands; each exposes ``commands``, a list of click commands.
COMMAND_MODULES = (
    "nebctl.controller.cli.validating",
    "nebctl.controller.cli.database",
    "nebctl.controller.cli.reconciling",
    "nebctl.controller.cli.inspecting",
    "nebctl.controller.cli.drivering",
    "nebctl.controller.cli.simulating",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(__version__, "--version", prog_name="nebctl")
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
        db_url=db_url, config_path=config_path, log_format=LogFormat(log_format), verbosity=verbose
    )


def _register_commands() -> None:
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        for command in module.commands:
            main.add_command(command)


_register_commands()
