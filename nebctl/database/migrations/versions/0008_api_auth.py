"""Revision api_auth: what the HTTP API's access control needs beyond the first identity tables: each user's
authentication driver (``builtin`` or ``exec``), and access rules that deny as well as allow, may name everyone,
and may be limited to stacks (NULL: every stack).

Revision ID: api_auth
Revises: replicas
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "api_auth"
down_revision: str | None = "replicas"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("driver", sa.String(length=32), server_default="builtin", nullable=False))
    with op.batch_alter_table("access_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("effect", sa.String(length=8), server_default="allow", nullable=False))
        batch_op.add_column(sa.Column("stacks", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_rules", schema=None) as batch_op:
        batch_op.drop_column("stacks")
        batch_op.drop_column("effect")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("driver")
