"""Schema versions: migrations from empty to head, models that match them, and refusing foreign schemas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Connection, inspect, text

from nebctl.cli import main
from nebctl.database import SchemaOutdated, SchemaTooNew, Store, engines, migrating
from nebctl.database.engines import transaction
from nebctl.database.models import Base


def test_upgrade_from_empty_matches_the_models(db_url: str) -> None:
    engine = engines.create(db_url)
    try:
        before, after = migrating.upgrade(engine)
        assert (before, after) == (None, migrating.head_revision())
        with transaction(engine, write=False) as connection:
            assert set(Base.metadata.tables) <= set(inspect(connection).get_table_names())
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        assert differences == [], differences
        # Upgrading again is a no-op, and the store accepts the migrated database.
        assert migrating.upgrade(engine) == (after, after)
    finally:
        engine.dispose()
    Store.open(db_url).close()


def test_created_schema_matches_the_migrations(db_url: str) -> None:
    """Store.open creates a new database from the models; it must be the schema the migrations make."""
    Store.open(db_url).close()
    engine = engines.create(db_url)
    try:
        with transaction(engine, write=False) as connection:
            assert migrating.current_revision(connection) == migrating.head_revision()
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def _schema(connection: Connection) -> dict[str, Any]:
    """Every table as the database reports it (the version table too), and the version rows."""
    inspector = inspect(connection)
    tables: dict[str, Any] = {}
    for name in sorted(inspector.get_table_names()):
        tables[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("autoincrement"))
                for c in inspector.get_columns(name)
            ],
            "primary key": inspector.get_pk_constraint(name),
            "foreign keys": sorted(map(repr, inspector.get_foreign_keys(name))),
            "indexes": sorted(map(repr, inspector.get_indexes(name))),
            "unique": sorted(map(repr, inspector.get_unique_constraints(name))),
        }
    if connection.dialect.name == "sqlite":
        # The version table's DDL exactly as Alembic's stamp writes it.
        tables["alembic_version"]["sql"] = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'alembic_version'"
        ).scalar()
    versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    return {"tables": tables, "versions": versions}


def test_created_database_is_the_migrated_database(db_url: str) -> None:
    """A new database gets its tables from the models and its version row without Alembic: the result is the
    database that running the migrations makes, version table included."""
    assert migrating.head_revision() == migrating.HEAD, "update migrating.HEAD with the new migration"
    Store.open(db_url).close()
    engine = engines.create(db_url)
    try:
        with transaction(engine, write=False) as connection:
            created = _schema(connection)
        with transaction(engine, write=True) as connection:
            Base.metadata.drop_all(connection)
            connection.exec_driver_sql("DROP TABLE alembic_version")
            assert inspect(connection).get_table_names() == []
        migrating.upgrade(engine)
        with transaction(engine, write=False) as connection:
            migrated = _schema(connection)
    finally:
        engine.dispose()
    assert created["versions"] == [migrating.HEAD]
    assert created == migrated


def test_opening_a_new_or_current_database_needs_no_alembic(tmp_path: Path) -> None:
    """Alembic (and Mako) cost every command a tenth of a second to import, SQLAlchemy's ORM nearly as much:
    only migrating needs the former, nothing the latter."""
    url = f"sqlite:///{tmp_path / 'nebctl.db'}"
    program = (
        "import sys\n"
        "from nebctl.database import Store\n"
        f"Store.open({url!r}).close()\n"
        f"Store.open({url!r}).close()\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('alembic', 'mako')\n"
        "             or name.startswith('sqlalchemy.orm')))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_newer_and_unversioned_schemas_are_refused(db_url: str) -> None:
    Store.open(db_url).close()
    engine = engines.create(db_url)
    try:
        with transaction(engine, write=True) as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
        with pytest.raises(SchemaTooNew, match="newer nebctl"):
            Store.open(db_url)
        with pytest.raises(SchemaTooNew):
            migrating.upgrade(engine)
        with transaction(engine, write=True) as connection:
            connection.execute(text("DELETE FROM alembic_version"))
        with pytest.raises(SchemaOutdated, match="nebctl db upgrade"):
            Store.open(db_url)
    finally:
        engine.dispose()


def test_db_commands(db_url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--db", db_url, "db", "current"])
    assert result.exit_code == 1 and "no nebctl schema" in result.output
    result = runner.invoke(main, ["--db", db_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"from empty to {migrating.head_revision()}" in result.output
    result = runner.invoke(main, ["--db", db_url, "db", "current"])
    assert result.exit_code == 0 and result.output.strip() == f"{migrating.head_revision()} (current)"


def test_unlock_command(db_url: str) -> None:
    runner = CliRunner()
    store = Store.open(db_url)
    try:
        lease = store.acquire_lock(holder="live apply", timeout=0, ttl=600)
        result = runner.invoke(main, ["--db", db_url, "unlock"])
        assert result.exit_code == 1 and "live apply" in result.output and "--force" in result.output
        assert store.lock_status() is not None
        result = runner.invoke(main, ["--db", db_url, "unlock", "--force"])
        assert result.exit_code == 0 and "released" in result.output
        assert store.lock_status() is None
        lease.release()
        store.acquire_lock(holder="dead apply", timeout=0, ttl=600, pid=2**22 + 1)
        result = runner.invoke(main, ["--db", db_url, "unlock"])
        assert result.exit_code == 0 and "dead apply" in result.output
        assert store.lock_status() is None
        result = runner.invoke(main, ["--db", db_url, "unlock"])
        assert result.exit_code == 0 and "not held" in result.output
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nonsense", "invalid database URL"),
        ("oracle://scott@db/x", "unsupported database"),
        ("postgresql+psycopg://nebctl:secret@127.0.0.1:1/nebctl", "cannot open the database"),
        ("mysql+pymysql://nebctl:secret@127.0.0.1:1/nebctl", "cannot open the database"),
        ("postgresql+nosuchdriver://x@127.0.0.1/db", "unknown database driver"),
    ],
)
def test_bad_urls_give_one_line(url: str, expected: str) -> None:
    result = CliRunner().invoke(main, ["--db", url, "unlock"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output
    assert "secret" not in result.output  # passwords are masked
    assert "Traceback" not in result.output


def test_wrong_credentials_give_one_line(request: pytest.FixtureRequest) -> None:
    for backend in ("postgresql", "mariadb"):
        server = request.getfixturevalue(f"{backend}_server")
        if backend == "postgresql":
            url = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/no_such_database"
        else:
            url = f"mysql+pymysql://nobody:wrong@127.0.0.1:{server.port}/nebctl"
        result = CliRunner().invoke(main, ["--db", url, "unlock"])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert "no_such_database" in lines[0] or "Access denied" in lines[0], lines


def test_sqlite_default_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "nebctl.db"
    Store.open(f"sqlite:///{target}").close()
    assert target.exists()
    engine = engines.create(f"sqlite:///{target}")
    try:
        with transaction(engine, write=False) as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()
