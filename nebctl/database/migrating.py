"""Schema versions: creating a new database, checking an existing one, and running Alembic migrations.

``Store.open`` calls ``ensure_schema`` (a new database gets the current schema at once; an older one is refused
with "run `nebctl db upgrade`"; a newer one is refused outright). The ``nebctl db`` commands call ``upgrade`` and
``current``. The migration scripts live in the ``migrations`` package next to this module and are run
programmatically, without an ``alembic.ini``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from nebctl.database.engines import transaction
from nebctl.database.errors import SchemaOutdated, SchemaTooNew
from nebctl.database.models import Base

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at the shipped scripts; ``env.py`` uses ``connection`` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None, "the shipped migrations have no head"
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def known_revisions() -> set[str]:
    return {script.revision for script in script_directory().walk_revisions()}


def ensure_schema(connection: Connection) -> None:
    """Create the schema on an empty database; accept only the current revision on an existing one."""
    revision = current_revision(connection)
    if revision is None:
        tables = set(inspect(connection).get_table_names())
        if tables & set(Base.metadata.tables):
            raise SchemaOutdated(
                "the database has nebctl tables but no schema version; run `nebctl db upgrade` "
                "or point --db at an empty database"
            )
        # A new database: the models are the head schema (a test checks that they agree with the migrations).
        Base.metadata.create_all(connection)
        MigrationContext.configure(connection).stamp(script_directory(), "heads")
        return
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
    with transaction(engine, write=True) as connection:
        before = current_revision(connection)
        if before is not None and before not in known_revisions():
            raise SchemaTooNew(f"the database schema is at revision {before}, newer than this nebctl knows")
        command.upgrade(alembic_config(connection), revision)
        after = current_revision(connection)
    return before, after
