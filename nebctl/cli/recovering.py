"""``nebctl recover``: rebuild lost records from the ownership written on live objects (docs/ownership.md).

The survey and the rebuilding are ``controller.recovering``'s; this module chooses the hosts (those of the
manifests, of the database, or ``--host``), prints what was found and what could not be rebuilt, and writes
the records in one transaction under the writers' lock. ``diff --recover`` and ``apply --recover`` call
``recover`` before planning. Exit codes: 0 when everything found was rebuilt (or recorded already), 1 when
something could not be.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import click

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.cli.session import check_stack, default_stack, open_controller
from nebctl.cli.validating import load_manifests
from nebctl.core.keys import ResourceKey
from nebctl.schemas.models import AnyManifest


def recover(
    app: AppContext,
    documents: Mapping[ResourceKey, AnyManifest],
    *,
    stack: str | None,
    hosts: Sequence[str] = (),
    dry_run: bool = False,
    lock_timeout: float | None = None,
) -> bool:
    """Rebuild the records of ``stack`` (every stack of this installation when None) from the live objects of
    the hosts (``hosts``, else every host of the manifests and the database); print what was done. Returns
    whether everything found could be rebuilt."""
    from nebctl.cli.reconciling import writer_lock
    from nebctl.controller.planning import PlanError

    controller = open_controller(app)
    timeout = app.settings.lock_timeout if lock_timeout is None else lock_timeout
    with writer_lock(app, stack=stack or "(all)", command="recover", timeout=timeout):
        try:
            recovery, found = controller.recover(documents, stack=stack, hosts=hosts, dry_run=dry_run)
        except PlanError as error:
            raise CliError("; ".join(error.problems)) from None
    for record in recovery.records:
        where = f" on {record.host}" if record.host else ""
        click.echo(f"  {'would rebuild' if dry_run else 'rebuilt'} {record.key} (stack {record.stack}){where}")
    for note in recovery.notes:
        click.echo(f"  note: {note}")
    for item in recovery.foreign:
        click.echo(f"  left alone: {item}")
    for problem in recovery.problems:
        click.echo(f"error: {problem}", err=True)
    verb = "Would rebuild" if dry_run else "Rebuilt"
    click.echo(f"{verb} {len(recovery.records)} record(s) from {len(found.objects)} owned live object(s).")
    return not recovery.problems


@click.command("recover")
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    metavar="PATH",
    type=click.Path(),
    help="Manifests: their hosts are searched, and their hosts' and hooks' records rebuilt too.",
)
@click.option("--stack", metavar="NAME", help="Only this stack's objects (default: the first -f's, else every stack).")
@click.option("--host", "hosts", multiple=True, metavar="HOST", help="Only this host; repeat for several.")
@click.option("--dry-run", is_flag=True, help="Show what would be rebuilt; write nothing.")
@pass_app
def recover_command(
    app: AppContext, *, paths: tuple[str, ...], stack: str | None, hosts: tuple[str, ...], dry_run: bool
) -> None:
    """Rebuild records from the ownership metadata on live objects.

    Lists every live object that carries this installation's ownership on the hosts (those of the manifests
    and of the database, or --host) and rebuilds the records the database lacks: applied spec, status, host,
    live ids, leases and incarnations. What cannot be rebuilt is reported, never guessed (exit 1).
    """
    documents = dict(load_manifests(paths).documents) if paths else {}
    chosen = check_stack(stack) if stack else (check_stack(default_stack(paths)) if paths else None)
    if not recover(app, documents, stack=chosen, hosts=hosts, dry_run=dry_run):
        sys.exit(1)


commands: list[click.Command] = [recover_command]
