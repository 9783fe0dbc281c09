"""The tables of nebctl's state database, as SQLAlchemy 2 declarative models.

``database.store`` reads and writes them (with SQLAlchemy Core statements on these tables, for speed), the
Alembic migrations in ``database.migrations`` create them, and ``docs/database.md`` documents every column for
users who build reports on them. String columns that are indexed have lengths that fit MySQL's index limits
(utf8mb4: four bytes a character, 3072 bytes a key). Times are aware UTC (``types.UTCDateTime``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from nebctl.database.types import BigId, Json, UTCDateTime

# Deterministic constraint names, so that migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

KIND_LENGTH = 32
NAME_LENGTH = 63  # resource and namespace names are DNS labels (SPEC section 1)
STACK_LENGTH = 128
HOST_LENGTH = 255
STATE_LENGTH = 32


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: Json, list[Any]: Json}


class Resource(Base):
    """One declared or adopted resource: what the manifests want, what was last applied, what is live."""

    __tablename__ = "resources"
    __table_args__ = (
        UniqueConstraint("kind", "namespace", "name"),
        Index(None, "stack"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    namespace: Mapped[str] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    stack: Mapped[str] = mapped_column(String(STACK_LENGTH))
    desired: Mapped[dict[str, Any] | None]
    desired_hash: Mapped[str | None] = mapped_column(String(64))
    applied: Mapped[dict[str, Any] | None]
    applied_hash: Mapped[str | None] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(STATE_LENGTH))
    live: Mapped[dict[str, Any]]
    host: Mapped[str | None] = mapped_column(String(HOST_LENGTH))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Apply(Base):
    """One run of ``apply``/``destroy``/the service's sync: its plan, who ran it, how it ended."""

    __tablename__ = "applies"
    __table_args__ = (Index(None, "stack", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stack: Mapped[str] = mapped_column(String(STACK_LENGTH))
    revision: Mapped[str | None] = mapped_column(String(128))
    holder: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    summary: Mapped[dict[str, Any] | None]
    plan: Mapped[dict[str, Any]]


class ApplyAction(Base):
    """The journal: one planned driver action of an apply, updated as it runs, so a killed apply can resume."""

    __tablename__ = "apply_actions"
    __table_args__ = (UniqueConstraint("apply_id", "action_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    apply_id: Mapped[int] = mapped_column(ForeignKey("applies.id", ondelete="CASCADE"))
    action_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    namespace: Mapped[str] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    family: Mapped[str] = mapped_column(String(STATE_LENGTH))
    operation: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(HOST_LENGTH))
    depends_on: Mapped[list[Any]]
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Event(Base):
    """The event log (``nebctl events``, ``describe``, hooks, the API): what happened to what, and when."""

    __tablename__ = "events"
    __table_args__ = (
        Index(None, "kind", "namespace", "name", "id"),
        Index(None, "time"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    time: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str | None] = mapped_column(String(KIND_LENGTH))
    namespace: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    stack: Mapped[str | None] = mapped_column(String(STACK_LENGTH))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]


class HostSample(Base):
    """A monitoring probe of one host; ``resolution`` is 0 for raw samples, else the downsampling bucket."""

    __tablename__ = "host_samples"
    __table_args__ = (
        Index(None, "host", "time"),
        Index(None, "time"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    host: Mapped[str] = mapped_column(String(HOST_LENGTH))
    time: Mapped[datetime]
    resolution: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    cpu_total: Mapped[int] = mapped_column(Integer)
    cpu_load: Mapped[float] = mapped_column(Float)
    memory_total: Mapped[int] = mapped_column(BigInteger)
    memory_used: Mapped[int] = mapped_column(BigInteger)
    disk_total: Mapped[int] = mapped_column(BigInteger)
    disk_used: Mapped[int] = mapped_column(BigInteger)
    attributes: Mapped[dict[str, Any]]


class VMSample(Base):
    """A monitoring probe of one VM (one bulk probe per host yields one row per VM)."""

    __tablename__ = "vm_samples"
    __table_args__ = (
        Index(None, "namespace", "name", "time"),
        Index(None, "time"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    host: Mapped[str] = mapped_column(String(HOST_LENGTH))
    time: Mapped[datetime]
    resolution: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    cpu: Mapped[float] = mapped_column(Float)
    memory_used: Mapped[int] = mapped_column(BigInteger)
    disk_read_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_write_bytes: Mapped[int] = mapped_column(BigInteger)
    net_rx_bytes: Mapped[int] = mapped_column(BigInteger)
    net_tx_bytes: Mapped[int] = mapped_column(BigInteger)


class AccountingRecord(Base):
    """One placement of a VM: from when to when it ran on a host, with which size (accounting, showback)."""

    __tablename__ = "accounting_history"
    __table_args__ = (
        Index(None, "namespace", "name", "started_at"),
        Index(None, "started_at"),
        Index(None, "ended_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(NAME_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    stack: Mapped[str | None] = mapped_column(String(STACK_LENGTH))
    host: Mapped[str] = mapped_column(String(HOST_LENGTH))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    vcpu: Mapped[int] = mapped_column(Integer)
    memory: Mapped[int] = mapped_column(BigInteger)
    disk: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(64))
    end_reason: Mapped[str | None] = mapped_column(String(64))


class HookRun(Base):
    """One run of a user hook program: which event triggered it, how it exited, what it printed (truncated)."""

    __tablename__ = "hook_runs"
    __table_args__ = (
        Index(None, "hook", "started_at"),
        Index(None, "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    hook: Mapped[str] = mapped_column(String(NAME_LENGTH))
    namespace: Mapped[str] = mapped_column(String(NAME_LENGTH))
    event: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime]
    duration: Mapped[float] = mapped_column(Float)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    timed_out: Mapped[bool] = mapped_column(Boolean, default=False)
    stdout: Mapped[str] = mapped_column(Text)
    stderr: Mapped[str] = mapped_column(Text)


class Lock(Base):
    """A named mutual-exclusion lock (the writers' lock of SPEC section 3): one row while it is held."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(String(64))
    holder: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(HOST_LENGTH))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class Lease(Base):
    """A leader lease for the service's replicas: whoever holds an unexpired row acts, the others wait."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class User(Base):
    """An identity of the built-in authentication driver (password hashes only, never passwords)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    groups: Mapped[list[Any]]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class Token(Base):
    """An API bearer token of a user; only its SHA-256 is stored, the secret is shown once at creation."""

    __tablename__ = "tokens"
    __table_args__ = (Index(None, "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class AccessRule(Base):
    """An allow rule (access is denied by default): a user or group may do some actions on some kinds."""

    __tablename__ = "access_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(128))
    actions: Mapped[list[Any]]
    kinds: Mapped[list[Any]]
    namespaces: Mapped[list[Any]]
    created_at: Mapped[datetime]


class Quota(Base):
    """Limits for a group or a namespace, enforced at plan time; a NULL limit means unlimited."""

    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("scope_type", "scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope_type: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(128))
    vms: Mapped[int | None] = mapped_column(Integer)
    vcpu: Mapped[int | None] = mapped_column(Integer)
    memory: Mapped[int | None] = mapped_column(BigInteger)
    disk: Mapped[int | None] = mapped_column(BigInteger)
