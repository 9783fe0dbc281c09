"""Revision acct0002: placement records keep the VM's state and owner; monthly showback records.

``accounting_history`` gains ``state`` (a start or stop of a VM splits its record, so running and stopped time
are priced apart; existing records were all written for running VMs) and ``owner`` (who placed it), and the
``showback`` table holds the priced usage of each VM, host and month.

Revision ID: acct0002
Revises: obs7c2e
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nebctl.database.types

revision: str = "acct0002"
down_revision: str | None = "obs7c2e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounting_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.String(length=32), server_default="running", nullable=False))
        batch_op.add_column(sa.Column("owner", sa.String(length=128), nullable=True))

    op.create_table(
        "showback",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("stack", sa.String(length=128), nullable=True),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("running_hours", sa.Double(), nullable=False),
        sa.Column("stopped_hours", sa.Double(), nullable=False),
        sa.Column("vcpu_hours", sa.Double(), nullable=False),
        sa.Column("memory_gib_hours", sa.Double(), nullable=False),
        sa.Column("disk_gib_hours", sa.Double(), nullable=False),
        sa.Column("cpu_cost", sa.Double(), nullable=False),
        sa.Column("memory_cost", sa.Double(), nullable=False),
        sa.Column("disk_cost", sa.Double(), nullable=False),
        sa.Column("cost", sa.Double(), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("computed_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_showback")),
    )
    with op.batch_alter_table("showback", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_showback_month_namespace_name"), ["month", "namespace", "name"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("showback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_showback_month_namespace_name"))
    op.drop_table("showback")
    with op.batch_alter_table("accounting_history", schema=None) as batch_op:
        batch_op.drop_column("owner")
        batch_op.drop_column("state")
