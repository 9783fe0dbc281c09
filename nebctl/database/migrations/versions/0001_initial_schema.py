"""Revision 0001: the initial schema of every table (generated from ``database.models``, then reviewed).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nebctl.database.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("actions", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("kinds", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("namespaces", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("created_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_rules")),
    )
    op.create_table(
        "accounting_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("stack", sa.String(length=128), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("started_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("ended_at", nebctl.database.types.UTCDateTime(), nullable=True),
        sa.Column("vcpu", sa.Integer(), nullable=False),
        sa.Column("memory", sa.BigInteger(), nullable=False),
        sa.Column("disk", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("end_reason", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounting_history")),
    )
    with op.batch_alter_table("accounting_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accounting_history_ended_at"), ["ended_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_accounting_history_namespace_name_started_at"),
            ["namespace", "name", "started_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_accounting_history_started_at"), ["started_at"], unique=False)

    op.create_table(
        "applies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stack", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.String(length=128), nullable=True),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("started_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", nebctl.database.types.UTCDateTime(), nullable=True),
        sa.Column("summary", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("plan", sa.JSON(none_as_null=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_applies")),
    )
    with op.batch_alter_table("applies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_applies_stack_id"), ["stack", "id"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("time", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=True),
        sa.Column("namespace", sa.String(length=63), nullable=True),
        sa.Column("name", sa.String(length=63), nullable=True),
        sa.Column("stack", sa.String(length=128), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(none_as_null=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_events_kind_namespace_name_id"), ["kind", "namespace", "name", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_events_time"), ["time"], unique=False)

    op.create_table(
        "hook_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hook", sa.String(length=63), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("started_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("timed_out", sa.Boolean(), nullable=False),
        sa.Column("stdout", sa.Text(), nullable=False),
        sa.Column("stderr", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_runs")),
    )
    with op.batch_alter_table("hook_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hook_runs_hook_started_at"), ["hook", "started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_hook_runs_started_at"), ["started_at"], unique=False)

    op.create_table(
        "host_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("time", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("cpu_total", sa.Integer(), nullable=False),
        sa.Column("cpu_load", sa.Float(), nullable=False),
        sa.Column("memory_total", sa.BigInteger(), nullable=False),
        sa.Column("memory_used", sa.BigInteger(), nullable=False),
        sa.Column("disk_total", sa.BigInteger(), nullable=False),
        sa.Column("disk_used", sa.BigInteger(), nullable=False),
        sa.Column("attributes", sa.JSON(none_as_null=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_host_samples")),
    )
    with op.batch_alter_table("host_samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_host_samples_host_time"), ["host", "time"], unique=False)
        batch_op.create_index(batch_op.f("ix_host_samples_time"), ["time"], unique=False)

    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("renewed_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "locks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_locks")),
    )
    op.create_table(
        "quotas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope_type", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("vms", sa.Integer(), nullable=True),
        sa.Column("vcpu", sa.Integer(), nullable=True),
        sa.Column("memory", sa.BigInteger(), nullable=True),
        sa.Column("disk", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quotas")),
        sa.UniqueConstraint("scope_type", "scope", name=op.f("uq_quotas_scope_type_scope")),
    )
    op.create_table(
        "resources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("stack", sa.String(length=128), nullable=False),
        sa.Column("desired", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("desired_hash", sa.String(length=64), nullable=True),
        sa.Column("applied", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("applied_hash", sa.String(length=64), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("live", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("created_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resources")),
        sa.UniqueConstraint("kind", "namespace", "name", name=op.f("uq_resources_kind_namespace_name")),
    )
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resources_stack"), ["stack"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("groups", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "vm_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("time", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=False),
        sa.Column("memory_used", sa.BigInteger(), nullable=False),
        sa.Column("disk_read_bytes", sa.BigInteger(), nullable=False),
        sa.Column("disk_write_bytes", sa.BigInteger(), nullable=False),
        sa.Column("net_rx_bytes", sa.BigInteger(), nullable=False),
        sa.Column("net_tx_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vm_samples")),
    )
    with op.batch_alter_table("vm_samples", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vm_samples_namespace_name_time"), ["namespace", "name", "time"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_vm_samples_time"), ["time"], unique=False)

    op.create_table(
        "apply_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("apply_id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("depends_on", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("started_at", nebctl.database.types.UTCDateTime(), nullable=True),
        sa.Column("finished_at", nebctl.database.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["apply_id"], ["applies.id"], name=op.f("fk_apply_actions_apply_id_applies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apply_actions")),
        sa.UniqueConstraint("apply_id", "action_id", name=op.f("uq_apply_actions_apply_id_action_id")),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", nebctl.database.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", nebctl.database.types.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", nebctl.database.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_tokens_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
    )
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tokens_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tokens_user_id"))

    op.drop_table("tokens")
    op.drop_table("apply_actions")
    with op.batch_alter_table("vm_samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vm_samples_time"))
        batch_op.drop_index(batch_op.f("ix_vm_samples_namespace_name_time"))

    op.drop_table("vm_samples")
    op.drop_table("users")
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resources_stack"))

    op.drop_table("resources")
    op.drop_table("quotas")
    op.drop_table("locks")
    op.drop_table("leases")
    with op.batch_alter_table("host_samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_host_samples_time"))
        batch_op.drop_index(batch_op.f("ix_host_samples_host_time"))

    op.drop_table("host_samples")
    with op.batch_alter_table("hook_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hook_runs_started_at"))
        batch_op.drop_index(batch_op.f("ix_hook_runs_hook_started_at"))

    op.drop_table("hook_runs")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_time"))
        batch_op.drop_index(batch_op.f("ix_events_kind_namespace_name_id"))

    op.drop_table("events")
    with op.batch_alter_table("applies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_applies_stack_id"))

    op.drop_table("applies")
    with op.batch_alter_table("accounting_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounting_history_started_at"))
        batch_op.drop_index(batch_op.f("ix_accounting_history_namespace_name_started_at"))
        batch_op.drop_index(batch_op.f("ix_accounting_history_ended_at"))

    op.drop_table("accounting_history")
    op.drop_table("access_rules")
