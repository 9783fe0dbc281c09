"""``nebctl serve`` (the continuous reconciliation service), ``nebctl status`` and ``nebctl sync``.

``serve`` runs ``controller.serving.Service`` in the foreground with the HTTP server of ``nebctl.api`` beside it,
until SIGTERM or Ctrl-C (then it starts no new action, waits for the running ones, releases the lock and exits
0). ``status`` reads the stacks' sync status and their resources' health from the database, whether the service
runs or not. ``sync`` leaves a request in the database that the running service takes within its poll interval
(``serve.request_poll``, 1 s by default); with ``--wait`` it waits until that sync is done.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.cli.database import open_store
from nebctl.cli.session import check_stack, default_stack
from nebctl.core.quantities import QuantityError, parse_duration

if TYPE_CHECKING:
    from nebctl.api.server import HttpServer
    from nebctl.controller.serving.service import Service


def _duration(option: str, text: str) -> float:
    try:
        return parse_duration(text)
    except QuantityError as error:
        raise CliError(f"{option}: {error}") from None


def _git_stack(url: str, path: str) -> str:
    name = Path(path).name if path not in (".", "") else url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return default_stack([name]) if name else "default"


def _check_tls(cert: Path | None, key: Path | None) -> None:
    if (cert is None) != (key is None):
        raise CliError("give both --tls-cert and --tls-key, or neither")
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not path.is_file():
            raise CliError(f"{option}: {path} is not a readable file")


@click.command("serve")
@click.option(
    "-f",
    "--filename",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="DIR",
    help="Directory of manifests, watched for changes.",
)
@click.option("--git", "git_url", metavar="URL", help="Git repository of manifests (file://, https://, ssh://).")
@click.option("--branch", metavar="BRANCH", help="Branch of --git (default: the remote's default branch).")
@click.option("--path", "git_path", default=".", show_default=True, metavar="PATH", help="Directory inside --git.")
@click.option("--stack", metavar="NAME", help="Stack owning the resources (default: the directory's name).")
@click.option("--interval", metavar="DURATION", help="Resync interval, with jitter (default 3m).")
@click.option(
    "--self-heal/--report-only",
    "self_heal",
    default=None,
    help="Correct drift, or only report it (default: the configuration's serve.self_heal, true).",
)
@click.option("--listen", metavar="ADDR", help="HOST:PORT of the HTTP server (default 127.0.0.1:8470).")
@click.option(
    "--tls-cert", type=click.Path(dir_okay=False, path_type=Path), metavar="PEM", help="Serve HTTPS: certificate."
)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), metavar="PEM", help="Its private key.")
@click.option("--prune", is_flag=True, default=None, help="Delete resources removed from the manifests.")
@click.option("--parallelism", type=click.IntRange(1, 1024), metavar="N", help="Actions run at once (default 16).")
@click.option(
    "--dashboard/--no-dashboard",
    "dashboard",
    default=True,
    show_default=True,
    help="Serve the web dashboard at / (signed-in users of the database only).",
)
@pass_app
def serve_command(
    app: AppContext,
    *,
    directory: Path | None,
    git_url: str | None,
    branch: str | None,
    git_path: str,
    stack: str | None,
    interval: str | None,
    self_heal: bool | None,
    listen: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    prune: bool | None,
    parallelism: int | None,
    dashboard: bool,
) -> None:
    """Keep the infrastructure converged on the manifests, continuously.

    Re-plans when the manifests change, on the resync interval and on `nebctl sync`; monitors hosts and VMs;
    corrects drift (--self-heal) or only reports it (--report-only); serves /healthz, /readyz, /metrics, the
    API under /api/v1 (docs/api.md) and the web dashboard at / (docs/dashboard.md; unless --no-dashboard). Runs
    until SIGTERM or Ctrl-C.
    """
    from nebctl.cli.session import open_registry
    from nebctl.controller.serving.service import Service
    from nebctl.controller.serving.sources import DirectorySource, GitSource, Source

    if (directory is None) == (git_url is None):
        raise CliError("give the manifests with exactly one of -f DIR or --git URL")
    _check_tls(tls_cert, tls_key)
    serve = app.settings.serve
    updates: dict[str, Any] = {}
    if interval is not None:
        updates["interval"] = _duration("--interval", interval)
        if updates["interval"] <= 0:
            raise CliError("--interval: must be more than zero")
    if listen is not None:
        updates["listen"] = listen
    settings = app.settings.model_copy(update={"serve": serve.model_copy(update=updates)})
    source: Source
    if directory is not None:
        cache = settings.state_dir / "cache" if settings.state_dir is not None and settings.manifest_cache else None
        source = DirectorySource(directory.resolve(), cache)
        stack_name = check_stack(stack or default_stack([str(directory)]))
    else:
        assert git_url is not None
        data_dir = settings.state_dir or Path(".")
        source = GitSource(git_url, data_dir / "git", branch=branch, path=git_path)
        stack_name = check_stack(stack or _git_stack(git_url, git_path))
    if app.verbosity == 0:
        logging.getLogger("nebctl").setLevel(logging.INFO)  # a service's log is its events, one per line
    store = open_store(app)
    service = Service(
        store=store,
        registry=open_registry(app),
        settings=settings,
        source=source,
        stack=stack_name,
        self_heal=self_heal,
        prune=prune,
        parallelism=parallelism,
    )
    server = _elect_and_listen(service, settings.serve.listen, tls_cert, tls_key, dashboard=dashboard)

    def stop(signum: int, frame: FrameType | None) -> None:
        if not service.stopping.is_set():
            logging.getLogger("nebctl.serve").warning(
                "%s: no new action will start; waiting for the running ones", signal.Signals(signum).name
            )
        service.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.run()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _elect_and_listen(
    service: Service, listen: str, tls_cert: Path | None, tls_key: Path | None, *, dashboard: bool
) -> HttpServer:
    """Join the election (refused at once, before anything listens, on SQLite with a replica running), then
    start the HTTP server (over TLS when given a certificate and key), with the dashboard unless turned off."""
    from nebctl.api.app import create_app
    from nebctl.api.server import HttpServer, ListenError
    from nebctl.controller.serving.leading import ReplicaRefused

    try:
        app = create_app(service)
    except OSError as error:
        raise CliError(f"api.webhook_secret_file: {error}") from None
    if dashboard:
        from nebctl.dashboard.app import mount
        from nebctl.dashboard.identity import AccessAuthority

        # The API's authenticator and authorizer: one login throttle and one set of rules for both faces.
        access = app.state.access
        mount(app, service, AccessAuthority(service.store, access.authenticator, access.authorizer))
    try:
        service.leadership.start()
    except ReplicaRefused as error:
        raise CliError(str(error)) from None
    try:
        server = HttpServer(app, listen, tls_cert=tls_cert, tls_key=tls_key)
        server.start()
    except (ListenError, OSError) as error:
        service.leadership.stop()
        raise CliError(f"--listen: {error}") from None
    return server


def _status_document(app: AppContext, stack: str | None) -> list[dict[str, Any]]:
    from nebctl.controller.serving.leading import lease_name

    store = open_store(app)
    statuses = store.list_stack_statuses()
    if stack is not None:
        statuses = [s for s in statuses if s.stack == stack]
        if not statuses:
            raise CliError(f"no status of stack {stack}: no nebctl serve has synced it")
    health = store.list_resource_health(stack)
    lock = store.lock_status()
    document = []
    for status in statuses:
        lease, now = store.lease_status(lease_name(status.stack))
        replicas, now = store.list_replicas(lease_name(status.stack))
        leading = lease is not None and lease.expires_at > now
        document.append(
            {
                "stack": status.stack,
                "sync_status": status.sync_status,
                "revision": status.revision,
                "source": status.source,
                "message": status.message,
                "problems": list(status.problems),
                "last_sync_at": status.last_sync_at.isoformat() if status.last_sync_at else None,
                "last_sync_result": status.last_sync_result,
                "last_apply": status.last_apply_id,
                "sync_requested_at": status.sync_requested_at.isoformat() if status.sync_requested_at else None,
                "lock_holder": lock.holder if lock is not None else None,
                "leader": lease.holder if lease is not None and leading else None,
                "term": lease.term if lease is not None else None,
                "lease_expires_at": lease.expires_at.isoformat() if lease is not None else None,
                "replicas": [
                    {
                        "replica": replica.id,
                        "role": replica.role,
                        "term": replica.term,
                        "host": replica.host,
                        "pid": replica.pid,
                        "listen": replica.listen,
                        "last_heartbeat_at": replica.heartbeat_at.isoformat(),
                        "heartbeat_age_seconds": round((now - replica.heartbeat_at).total_seconds(), 3),
                    }
                    for replica in replicas
                ],
                "resources": [
                    {
                        "resource": str(h.key),
                        "health": h.health,
                        "message": h.message,
                        "failures": h.failures,
                        "next_attempt_at": h.next_attempt_at.isoformat() if h.next_attempt_at else None,
                    }
                    for h in health
                    if h.stack == status.stack
                ],
            }
        )
    return document


@click.command("status")
@click.argument("stack", required=False)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_app
def status_command(app: AppContext, stack: str | None, output: str) -> None:
    """Sync status, revision and last sync of each stack the service reconciles, and its resources' health."""
    document = _status_document(app, stack)
    if output == "json":
        click.echo(json.dumps(document, indent=2))
        return
    if not document:
        click.echo("No stack has been synced by nebctl serve yet.")
        return
    from rich.table import Table

    for entry in document:
        commit = (entry["source"] or {}).get("commit") or {}
        click.echo(f"stack {entry['stack']}: {entry['sync_status']}")
        click.echo(f"  revision:  {entry['revision'] or '-'}" + (f" ({commit.get('subject')})" if commit else ""))
        click.echo(f"  last sync: {entry['last_sync_at'] or 'never'} ({entry['last_sync_result'] or '-'})")
        if entry["message"]:
            click.echo(f"  message:   {entry['message']}")
        for problem in entry["problems"]:
            click.echo(f"  problem:   {problem}")
        if entry["lock_holder"]:
            click.echo(f"  writing:   {entry['lock_holder']}")
        if entry["term"] is not None:
            click.echo(f"  leader:    {entry['leader'] or 'none (the lease expired)'} (term {entry['term']})")
        for replica in entry["replicas"]:
            click.echo(
                f"  replica:   {replica['replica']} {replica['role']}, last heartbeat "
                f"{replica['heartbeat_age_seconds']:.1f}s ago ({replica['last_heartbeat_at']})"
            )
        table = Table(box=None, pad_edge=False)
        for column in ("RESOURCE", "HEALTH", "MESSAGE"):
            table.add_column(column)
        for resource in entry["resources"]:
            table.add_row(resource["resource"], resource["health"], resource["message"] or "")
        if entry["resources"]:
            app.console.print(table)


@click.command("sync")
@click.argument("stack")
@click.option("--wait", "wait", metavar="DURATION", help="Wait (up to DURATION) until the service has synced.")
@pass_app
def sync_command(app: AppContext, stack: str, wait: str | None) -> None:
    """Ask the running nebctl serve to sync STACK now (fetching a git source first).

    The request is left in the database; the service takes it within a second. With --wait, exits 0 once the
    sync is done (1 if it is not done in time).
    """
    store = open_store(app)
    requested = store.request_sync(check_stack(stack))
    if wait is None:
        click.echo(f"sync of stack {stack} requested")
        return
    deadline = time.monotonic() + _duration("--wait", wait)
    while time.monotonic() < deadline:
        status = store.stack_status(stack)
        if (
            status is not None
            and status.sync_requested_at is None
            and status.last_sync_at is not None
            and status.last_sync_at >= requested
        ):
            click.echo(f"stack {stack}: {status.sync_status} at revision {status.revision or '-'}")
            return
        threading.Event().wait(0.2)
    click.echo(f"error: stack {stack} was not synced within {wait}: is nebctl serve running?", err=True)
    sys.exit(1)


commands: list[click.Command] = [serve_command, status_command, sync_command]
