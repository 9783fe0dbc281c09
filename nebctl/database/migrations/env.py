"""Alembic's entry point for nebctl's migrations; run only through ``database.migrating`` with a connection.

nebctl never runs the ``alembic`` command line: ``migrating.upgrade`` hands its open connection in through the
configuration's attributes, so the URL handling, SQLite tuning and error messages are the store's own.
"""

from __future__ import annotations

from alembic import context

from nebctl.database.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("nebctl's migrations run through `nebctl db upgrade`, not the alembic command line")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
