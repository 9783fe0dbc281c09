"""Schema versions: creating a new database, checking an existing one, and running Alembic migrations.

``Store.open`` calls ``ensure_schema`` (a new database gets the current schema at once; an older one is refused
with "run `nebctl db upgrade`"; a newer one is refused outright). The ``nebctl db`` commands call ``upgrade`` and
``current``. The migration scripts live in the ``migrations`` package next to this module and are run
programmatically, without an ``alembic.ini``.

Alembic (and the Mako templates it loads) is imported only to migrate, or to judge a version that is not this
code's: every command opens the store, and a database already at ``HEAD``, or a brand-new one, needs none of it.
A new database gets its tables from the models and its version row written here, exactly as ``stamp`` writes it
(tests/database/test_migrations.py compares the result with a migrated database, and ``HEAD`` with the scripts).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, insert, inspect, select
from sqlalchemy.engine import Connection, Engine

from nebctl.database.engines import transaction
from nebctl.database.errors import SchemaOutdated, SchemaTooNew
from nebctl.database.models import Base, ChangeCounter
from nebctl.database.versions import seed_rows

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

HEAD = "api_cache"
"""The newest revision in ``migrations/versions`` (a test checks it against Alembic's head): update it with
every new migration."""

VERSION_TABLE = "alembic_version"
# Alembic's version table, as ``MigrationContext`` defines it (``DefaultImpl.version_table_impl``).
_version = Table(
    VERSION_TABLE,
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at the shipped scripts; ``env.py`` uses ``connection`` when given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None, "the shipped migrations have no head"
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _stored_versions(connection: Connection) -> list[str] | None:
    """The rows of the version table, or None without one (what ``current_revision`` reads, without Alembic)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return [str(version) for version in connection.execute(select(_version.c.version_num)).scalars()]


def known_revisions() -> set[str]:
    return {script.revision for script in script_directory().walk_revisions()}


def ensure_schema(connection: Connection) -> None:
    """Create the schema on an empty database; accept only the current revision on an existing one."""
    versions = _stored_versions(connection)
    if versions == [HEAD]:
        return
    if not versions:
        tables = set(inspect(connection).get_table_names())
        if tables & set(Base.metadata.tables):
            raise SchemaOutdated(
                "the database has nebctl tables but no schema version; run `nebctl db upgrade` "
                "or point --db at an empty database"
            )
        # A new database: the models are the head schema (a test checks that they agree with the migrations),
        # stamped with the head revision as ``alembic stamp heads`` does. None of its tables exists (just
        # checked), so they are created without asking for each one first.
        Base.metadata.create_all(connection, checkfirst=False)
        connection.execute(insert(ChangeCounter), seed_rows())
        _version.create(connection, checkfirst=True)
        connection.execute(insert(_version).values(version_num=HEAD))
        return
    # Another revision (or several): Alembic judges it, with its own messages.
    revision = current_revision(connection)
    head = head_revision()
    if revision == head:
        return
    if revision in known_revisions():
        raise SchemaOutdated(
            f"the database schema is at revision {revision}, older than {head}: run `nebctl db upgrade`"
        )
    raise SchemaTooNew(
        f"the database schema is at revision {revision}, which this nebctl does not know: it was upgraded by a "
        "newer nebctl; use that version (or newer)"
    )


def upgrade(engine: Engine, revision: str = "heads") -> tuple[str | None, str | None]:
    """Run the migrations up to ``revision``; returns the revisions before and after."""
    from alembic import command

    with transaction(engine, write=True) as connection:
        before = current_revision(connection)
        if before is not None and before not in known_revisions():
            raise SchemaTooNew(f"the database schema is at revision {before}, newer than this nebctl knows")
        command.upgrade(alembic_config(connection), revision)
        after = current_revision(connection)
    return before, after
