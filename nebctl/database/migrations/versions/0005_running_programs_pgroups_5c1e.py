"""Revision pgroups_5c1e: the ``running_programs`` table (external programs' process groups, so that a dead
nebctl's programs still running are ended by the next writer).

Revision ID: pgroups_5c1e
Revises: b7e4c2a91d05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nebctl.database.types

revision: str = "pgroups_5c1e"
down_revision: str | None = "b7e4c2a91d05"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "running_programs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=False),
        sa.Column("pgid", sa.Integer(), nullable=False),
        sa.Column("leader_started", sa.BigInteger(), nullable=False),
        sa.Column("owner_pid", sa.Integer(), nullable=False),
        sa.Column("owner_started", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("started_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_running_programs")),
    )
    with op.batch_alter_table("running_programs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_running_programs_host"), ["host"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("running_programs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_running_programs_host"))
    op.drop_table("running_programs")
