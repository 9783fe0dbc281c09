"""``nebctl db upgrade``, ``nebctl db current`` and ``nebctl unlock``; and ``open_store`` for every command.

Commands that need the state database call ``open_store(app)``: it opens the ``Store`` once per invocation,
closes it when the command ends, and turns any ``DatabaseError`` (bad URL, unreachable server, outdated
schema) into one line for the user. The ``db`` commands work on databases that ``Store.open`` refuses.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from nebctl.cli.app import AppContext, CliError, pass_app
from nebctl.database import DatabaseError, Store, engines, migrating, sealing
from nebctl.database.engines import transaction, translated_errors
from nebctl.database.locking import WRITERS

INSTALLATION_FILE_NAME = "installation.id"


def database_timeouts(app: AppContext) -> engines.Timeouts:
    """The ``database`` settings as the engines take them."""
    database = app.settings.database
    return engines.Timeouts(
        connect=database.connect_timeout,
        read=database.read_timeout,
        write=database.write_timeout,
        busy=database.busy_timeout,
    )


def secret_key_file(app: AppContext) -> Path:
    """Where the key of the secrets' digests is: $NEBCTL_SECRET_KEY_FILE, else the configuration's
    ``secret_key_file``, else ``secret.key`` in the state directory (the user's data directory)."""
    configured = os.environ.get(sealing.KEY_FILE_ENV) or app.settings.secret_key_file
    if configured:
        return Path(configured).expanduser()
    assert app.settings.state_dir is not None, "AppContext.create sets the state directory"
    return sealing.default_key_file(app.settings.state_dir)


def installation_file(app: AppContext) -> Path:
    """Where the installation id is kept beside the database (``database.installing``): next to the key file,
    which survives the database's loss for the same reason."""
    return secret_key_file(app).with_name(INSTALLATION_FILE_NAME)


def open_store(app: AppContext) -> Store:
    """The invocation's store, opened on first use and closed when the command ends."""

    def factory() -> Store:
        try:
            ring = sealing.load_key_ring(secret_key_file(app))
            store = Store.open(app.db_url, timeouts=database_timeouts(app), secrets=ring)
        except DatabaseError as error:
            raise CliError(str(error)) from error
        click.get_current_context().call_on_close(store.close)
        return store

    store: Store = app.resource("store", factory)
    return store


@click.group("db")
def db_group() -> None:
    """Schema migrations of the state database."""


@db_group.command("upgrade")
@pass_app
def upgrade_command(app: AppContext) -> None:
    """Bring the database schema to this nebctl's version (creating it on an empty database)."""
    try:
        engine = engines.create(app.db_url, database_timeouts(app))
        try:
            with translated_errors(engine.url, "cannot upgrade the database"):
                before, after = migrating.upgrade(engine)
        finally:
            engine.dispose()
    except DatabaseError as error:
        raise CliError(str(error)) from error
    if before == after:
        click.echo(f"database schema already at revision {after} (current)")
    else:
        click.echo(f"database schema upgraded from {before or 'empty'} to {after}")


@db_group.command("current")
@pass_app
def current_command(app: AppContext) -> None:
    """Print the database's schema revision; exits 1 when it is not this nebctl's."""
    try:
        engine = engines.create(app.db_url, database_timeouts(app))
        try:
            with translated_errors(engine.url, "cannot read the database"), transaction(engine, write=False) as conn:
                revision = migrating.current_revision(conn)
        finally:
            engine.dispose()
    except DatabaseError as error:
        raise CliError(str(error)) from error
    head = migrating.head_revision()
    if revision == head:
        click.echo(f"{revision} (current)")
    elif revision is None:
        raise CliError("the database has no nebctl schema yet: it is created on first use, or by `nebctl db upgrade`")
    elif revision in migrating.known_revisions():
        raise CliError(f"{revision}: older than this nebctl's {head}; run `nebctl db upgrade`")
    else:
        raise CliError(f"{revision}: unknown to this nebctl (head {head}); the database was upgraded by a newer nebctl")


@click.command("unlock")
@click.option("--force", is_flag=True, help="Release the lock even if its holder seems alive.")
@click.option("--name", default=WRITERS, show_default=True, help="Which lock.", hidden=True)
@pass_app
def unlock_command(app: AppContext, force: bool, name: str) -> None:
    """Release the writers' lock left by a dead process.

    Without --force, only a lock whose holder is gone (expired, or its process dead on this host) is released;
    a holder on another host may still be running, so releasing its lock needs --force.
    """
    store = open_store(app)
    try:
        current = store.lock_status(name)
        if current is None:
            click.echo(f"lock {name!r} is not held")
            return
        if not force and not store.lock_is_stale(current):
            raise CliError(
                f"lock {name!r} is held by {current.describe()}, which may still be running; "
                "stop it, or use --force if you are sure it is gone"
            )
        released = store.force_unlock(name)
    except DatabaseError as error:
        raise CliError(str(error)) from error
    if released is not None:
        click.echo(f"released lock {name!r} held by {released.describe()}")


commands: list[click.Command] = [db_group, unlock_command]
