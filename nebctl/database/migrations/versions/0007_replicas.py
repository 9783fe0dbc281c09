"""Revision replicas: the service's replicas. The leader lease gets its term (a fencing token that only grows),
each replica of ``nebctl serve`` its row (``replicas``: role, term, last heartbeat), and the journal's actions and
applies the term they were written under.

Revision ID: replicas
Revises: cloud_showback
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nebctl.database.types

revision: str = "replicas"
down_revision: str | None = "cloud_showback"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("term", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("lease", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("listen", sa.String(length=255), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("term", sa.BigInteger(), nullable=True),
        sa.Column("started_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_replicas_lease"), ["lease"], unique=False)
    with op.batch_alter_table("apply_actions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("term", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("applies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("term", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("applies", schema=None) as batch_op:
        batch_op.drop_column("term")
    with op.batch_alter_table("apply_actions", schema=None) as batch_op:
        batch_op.drop_column("term")
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replicas_lease"))
    op.drop_table("replicas")
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_column("term")
