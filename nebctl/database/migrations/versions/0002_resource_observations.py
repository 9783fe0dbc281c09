"""Revision obs7c2e: the ``resource_observations`` table, what monitoring last saw of hosts and VMs.

Revision ID: obs7c2e
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nebctl.database.types

revision: str = "obs7c2e"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resource_observations",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("observed_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("details", sa.JSON(none_as_null=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "namespace", "name", name=op.f("pk_resource_observations")),
    )
    with op.batch_alter_table("resource_observations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_observations_host"), ["host"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("resource_observations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_observations_host"))
    op.drop_table("resource_observations")
