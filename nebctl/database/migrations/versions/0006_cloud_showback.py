"""Revision cloud_showback: placement records and showback rows keep the cloud instance type.

A VM on a cloud host is billed per hour of its instance type (the config's ``pricing.instance_hour``), so a
placement record keeps the type the VM ran as (``instance_type``; NULL on other hosts, and for the records
written before), and a showback row the type it was priced by.

Revision ID: cloud_showback
Revises: pgroups_5c1e
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cloud_showback"
down_revision: str | None = "pgroups_5c1e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounting_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("instance_type", sa.String(length=64), nullable=True))
    with op.batch_alter_table("showback", schema=None) as batch_op:
        batch_op.add_column(sa.Column("instance_type", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("showback", schema=None) as batch_op:
        batch_op.drop_column("instance_type")
    with op.batch_alter_table("accounting_history", schema=None) as batch_op:
        batch_op.drop_column("instance_type")
