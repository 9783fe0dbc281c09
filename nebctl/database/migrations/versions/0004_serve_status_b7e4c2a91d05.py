"""The reconciliation service's tables: stacks' sync status, resources' health, and each apply's revision.

Revision ID: b7e4c2a91d05
Revises: acct0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nebctl.database.types

revision: str = "b7e4c2a91d05"
down_revision: str | None = "acct0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stack_status",
        sa.Column("stack", sa.String(length=128), nullable=False),
        sa.Column("sync_status", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.String(length=128), nullable=True),
        sa.Column("source", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("problems", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("last_sync_at", nebctl.database.types.UTCDateTime(), nullable=True),
        sa.Column("last_sync_result", sa.String(length=32), nullable=True),
        sa.Column("last_apply_id", sa.Integer(), nullable=True),
        sa.Column("sync_requested_at", nebctl.database.types.UTCDateTime(), nullable=True),
        sa.Column("updated_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("stack", name=op.f("pk_stack_status")),
    )
    op.create_table(
        "resource_health",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("stack", sa.String(length=128), nullable=False),
        sa.Column("health", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", nebctl.database.types.UTCDateTime(), nullable=True),
        sa.Column("updated_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_health")),
        sa.UniqueConstraint("kind", "namespace", "name", name=op.f("uq_resource_health_kind_namespace_name")),
    )
    with op.batch_alter_table("resource_health", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_health_stack"), ["stack"], unique=False)
    op.create_table(
        "apply_revisions",
        sa.Column("apply_id", sa.Integer(), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("dirty", sa.Boolean(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["apply_id"], ["applies.id"], name=op.f("fk_apply_revisions_apply_id_applies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("apply_id", name=op.f("pk_apply_revisions")),
    )


def downgrade() -> None:
    op.drop_table("apply_revisions")
    with op.batch_alter_table("resource_health", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_health_stack"))
    op.drop_table("resource_health")
    op.drop_table("stack_status")
