"""Revision api_cache: the ``change_counters`` table (a counter per family of data, raised by every write to it),
which the HTTP API's caches are keyed by, so that every replica sees a change made by any other.

Revision ID: api_cache
Revises: recover
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "api_cache"
down_revision: str | None = "recover"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    counters = op.create_table(
        "change_counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_change_counters")),
    )
    # Written out rather than imported: a migration must keep doing what it did when the code moves on.
    op.bulk_insert(counters, [{"name": "resources", "value": 0}, {"name": "access", "value": 0}])


def downgrade() -> None:
    op.drop_table("change_counters")
