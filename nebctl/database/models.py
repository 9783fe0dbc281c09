"""The tables of nebctl's state database, as SQLAlchemy Core tables.

``database.store`` reads and writes them (with SQLAlchemy Core statements), the Alembic migrations in
``database.migrations`` create them, and ``docs/database.md`` documents every column for users who build reports
on them. String columns that are indexed have lengths that fit MySQL's index limits (utf8mb4: four bytes a
character, 3072 bytes a key). Times are aware UTC (``types.UTCDateTime``). Core tables rather than ORM models:
nothing maps rows to objects (the store returns its own frozen records), and every command that opens the store
would otherwise import SQLAlchemy's ORM and configure its mappers for nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

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
NAME_LENGTH = 63  # resource and namespace names are DNS labels (docs/manifests.md)
STACK_LENGTH = 128
HOST_LENGTH = 255
STATE_LENGTH = 32
INSTANCE_TYPE_LENGTH = 64

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base:
    """Where Alembic's environment, ``migrating`` and the tests find the tables: ``Base.metadata``."""

    metadata = metadata


_TIME = UTCDateTime()


def _required(name: str, type_: Any, *args: Any, **kwargs: Any) -> Column[Any]:
    return Column(name, type_, *args, nullable=False, **kwargs)


def _optional(name: str, type_: Any, *args: Any, **kwargs: Any) -> Column[Any]:
    return Column(name, type_, *args, nullable=True, **kwargs)


# One declared or adopted resource: what the manifests want, what was last applied, what is live.
Resource = Table(
    "resources",
    metadata,
    Column("id", Integer, primary_key=True),
    _required("kind", String(KIND_LENGTH)),
    _required("namespace", String(NAME_LENGTH)),
    _required("name", String(NAME_LENGTH)),
    _required("stack", String(STACK_LENGTH)),
    _optional("desired", Json),
    _optional("desired_hash", String(64)),
    _optional("applied", Json),
    _optional("applied_hash", String(64)),
    _required("generation", Integer, default=0),
    _required("status", String(STATE_LENGTH)),
    _required("live", Json),
    _optional("host", String(HOST_LENGTH)),
    _required("created_at", _TIME),
    _required("updated_at", _TIME),
    UniqueConstraint("kind", "namespace", "name"),
    Index(None, "stack"),
)

# What monitoring last saw, by the host whose probe saw it: a row per host, and a row per VM only where the VM
# differs from its record (a VM of a probed host without a row was seen as recorded, at the host's time). Written
# by diff, apply and the service, read by ``get`` and ``describe`` to show the live state beside the record.
ResourceObservation = Table(
    "resource_observations",
    metadata,
    _required("kind", String(KIND_LENGTH)),
    _required("namespace", String(NAME_LENGTH)),
    _required("name", String(NAME_LENGTH)),
    _required("host", String(HOST_LENGTH)),
    _required("state", String(STATE_LENGTH)),
    _required("observed_at", _TIME),
    _required("details", Json),
    PrimaryKeyConstraint("kind", "namespace", "name"),
    Index(None, "host"),
)

# One run of ``apply``/``destroy``/the service's sync: its plan, who ran it, how it ended.
Apply = Table(
    "applies",
    metadata,
    Column("id", Integer, primary_key=True),
    _required("stack", String(STACK_LENGTH)),
    _optional("revision", String(128)),
    _required("holder", String(255)),
    _required("state", String(STATE_LENGTH)),
    _required("started_at", _TIME),
    _optional("finished_at", _TIME),
    _optional("summary", Json),
    _required("plan", Json),
    # The leader lease's term a service replica began it under (None for a CLI apply): see ``replicas``.
    _optional("term", BigInteger),
    Index(None, "stack", "id"),
)

# The journal: one planned driver action of an apply, updated as it runs, so a killed apply can resume.
ApplyAction = Table(
    "apply_actions",
    metadata,
    Column("id", BigId, primary_key=True),
    _required("apply_id", Integer, ForeignKey("applies.id", ondelete="CASCADE")),
    _required("action_id", String(255)),
    _required("kind", String(KIND_LENGTH)),
    _required("namespace", String(NAME_LENGTH)),
    _required("name", String(NAME_LENGTH)),
    _required("family", String(STATE_LENGTH)),
    _required("operation", String(64)),
    _optional("host", String(HOST_LENGTH)),
    _required("depends_on", Json),
    _required("state", String(STATE_LENGTH)),
    _required("attempts", Integer, default=0),
    _optional("error", Text),
    _optional("result", Json),
    _optional("started_at", _TIME),
    _optional("finished_at", _TIME),
    # The leader lease's term of the last write to this entry (None for a CLI apply): which leader acted.
    _optional("term", BigInteger),
    UniqueConstraint("apply_id", "action_id"),
)

# The event log (``nebctl events``, ``describe``, hooks, the API): what happened to what, and when.
Event = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True),
    _required("time", _TIME),
    _required("type", String(64)),
    _required("severity", String(16)),
    _optional("kind", String(KIND_LENGTH)),
    _optional("namespace", String(NAME_LENGTH)),
    _optional("name", String(NAME_LENGTH)),
    _optional("stack", String(STACK_LENGTH)),
    _required("message", Text),
    _required("data", Json),
    Index(None, "kind", "namespace", "name", "id"),
    Index(None, "time"),
)

# A monitoring probe of one host; ``resolution`` is 0 for raw samples, else the downsampling bucket.
HostSample = Table(
    "host_samples",
    metadata,
    Column("id", BigId, primary_key=True),
    _required("host", String(HOST_LENGTH)),
    _required("time", _TIME),
    _required("resolution", Integer, default=0),
    _required("state", String(STATE_LENGTH)),
    _required("cpu_total", Integer),
    _required("cpu_load", Float),
    _required("memory_total", BigInteger),
    _required("memory_used", BigInteger),
    _required("disk_total", BigInteger),
    _required("disk_used", BigInteger),
    _required("attributes", Json),
    Index(None, "host", "time"),
    Index(None, "time"),
)

# A monitoring probe of one VM (one bulk probe per host yields one row per VM).
VMSample = Table(
    "vm_samples",
    metadata,
    Column("id", BigId, primary_key=True),
    _required("namespace", String(NAME_LENGTH)),
    _required("name", String(NAME_LENGTH)),
    _required("host", String(HOST_LENGTH)),
    _required("time", _TIME),
    _required("resolution", Integer, default=0),
    _required("state", String(STATE_LENGTH)),
    _required("cpu", Float),
    _required("memory_used", BigInteger),
    _required("disk_read_bytes", BigInteger),
    _required("disk_write_bytes", BigInteger),
    _required("net_rx_bytes", BigInteger),
    _required("net_tx_bytes", BigInteger),
    Index(None, "namespace", "name", "time"),
    Index(None, "time"),
)

# One placement of a VM: from when to when it ran on a host, with which size (accounting, showback).
AccountingRecord = Table(
    "accounting_history",
    metadata,
    Column("id", BigId, primary_key=True),
    _required("namespace", String(NAME_LENGTH)),
    _required("name", String(NAME_LENGTH)),
    _optional("stack", String(STACK_LENGTH)),
    _required("host", String(HOST_LENGTH)),
    _required("started_at", _TIME),
    _optional("ended_at", _TIME),
    _required("vcpu", Integer),
    _required("memory", BigInteger),
    _required("disk", BigInteger),
    _required("reason", String(64)),
    _optional("end_reason", String(64)),
    # ``running`` or ``stopped``/``suspended``: a state change splits the record, so that showback can price
    # running and stopped time apart; ``owner`` is the user whose apply placed it (``--by user``).
    _required("state", String(STATE_LENGTH), default="running", server_default="running"),
    _optional("owner", String(128)),
    # The cloud instance type the VM ran as (NULL off the cloud): showback prices it per instance-hour.
    _optional("instance_type", String(INSTANCE_TYPE_LENGTH)),
    Index(None, "namespace", "name", "started_at"),
    Index(None, "started_at"),
    Index(None, "ended_at"),
)

# The priced usage of one VM on one host in one calendar month (``nebctl showback``): recomputed on demand from
# ``accounting_history``, a month's rows replaced together, so that billing can read a table. Hours and costs
# are double precision (MySQL's FLOAT would keep about seven digits of a bill).
ShowbackRecord = Table(
    "showback",
    metadata,
    Column("id", BigId, primary_key=True),
    _required("month", String(7)),
    _required("namespace", String(NAME_LENGTH)),
    _required("name", String(NAME_LENGTH)),
    _optional("stack", String(STACK_LENGTH)),
    _optional("owner", String(128)),
    _required("host", String(HOST_LENGTH)),
    _required("running_hours", Double),
    _required("stopped_hours", Double),
    _required("vcpu_hours", Double),
    _required("memory_gib_hours", Double),
    _required("disk_gib_hours", Double),
    _required("cpu_cost", Double),
    _required("memory_cost", Double),
    _required("disk_cost", Double),
    _required("cost", Double),
    _required("currency", String(16)),
    _required("computed_at", _TIME),
    _optional("instance_type", String(INSTANCE_TYPE_LENGTH)),  # priced per hour of this cloud type
    Index(None, "month", "namespace", "name"),
)

# One run of a user hook program: which event triggered it, how it exited, what it printed (truncated).
HookRun = Table(
    "hook_runs",
    metadata,
    Column("id", BigId, primary_key=True),
    _required("hook", String(NAME_LENGTH)),
    _required("namespace", String(NAME_LENGTH)),
    _required("event", String(64)),
    _optional("event_id", BigInteger),
    _required("started_at", _TIME),
    _required("duration", Float),
    _optional("exit_code", Integer),
    _required("timed_out", Boolean, default=False),
    _required("stdout", Text),
    _required("stderr", Text),
    Index(None, "hook", "started_at"),
    Index(None, "started_at"),
)

# An external program (exec driver, hook) running for nebctl: its process group, and enough to know the group
# again safely (its leader's start time, the boot) and to know whether the nebctl that started it still runs.
# A row lives while the program runs; the next writer ends the groups of a dead nebctl that are still running.
RunningProgram = Table(
    "running_programs",
    metadata,
    Column("id", BigId, primary_key=True),
    _required("host", String(HOST_LENGTH)),
    _required("boot_id", String(64)),
    _required("pgid", Integer),
    _required("leader_started", BigInteger),
    _required("owner_pid", Integer),
    _required("owner_started", BigInteger),
    _required("label", String(255)),
    _required("started_at", _TIME),
    Index(None, "host"),
)

# The installation: one row, its id written on every live object nebctl makes (docs/ownership.md), so that two
# installations sharing hosts never take each other's objects.
Installation = Table(
    "installation",
    metadata,
    Column("id", String(64), primary_key=True),
    _required("created_at", _TIME),
)

# Change counters: a row per family of data, its value raised by every write to that family in the write's own
# transaction, so that a reader anywhere (any replica, the CLI) can tell that nothing changed since it last read
# by reading one small row. ``resources``: records and observations (what the API's resource pages show);
# ``access``: users, tokens and access rules. Written by ``database.versions``; read by the API's caches.
ChangeCounter = Table(
    "change_counters",
    metadata,
    Column("name", String(32), primary_key=True),
    _required("value", BigInteger),
)

# A named mutual-exclusion lock (the writers' lock, docs/database.md): one row while it is held.
Lock = Table(
    "locks",
    metadata,
    Column("name", String(64), primary_key=True),
    _required("token", String(64)),
    _required("holder", String(255)),
    _required("host", String(HOST_LENGTH)),
    _required("pid", Integer),
    _required("acquired_at", _TIME),
    _required("expires_at", _TIME),
)

# A leader lease for the service's replicas: whoever holds an unexpired row acts, the others wait. Its times
# are the database server's clock; ``term`` grows by one at every change of holder and fences the old holder's
# writes (``database.leasing``).
Lease = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    _required("holder", String(255)),
    _required("acquired_at", _TIME),
    _required("renewed_at", _TIME),
    _required("expires_at", _TIME),
    _required("term", BigInteger, server_default="0"),
)

# One row per running replica of ``nebctl serve``: its role, the term it leads under, and its last heartbeat
# (the database's clock), for ``nebctl status`` and the metrics.
Replica = Table(
    "replicas",
    metadata,
    Column("id", String(128), primary_key=True),
    _required("lease", String(64), index=True),
    _required("host", String(HOST_LENGTH)),
    _required("pid", Integer),
    _optional("listen", String(255)),
    _required("role", String(16)),
    _optional("term", BigInteger),
    _required("started_at", _TIME),
    _required("heartbeat_at", _TIME),
)

# A user of the API: its authentication driver (``builtin``: the argon2id hash here, never a password;
# ``exec``: an external program decides), its groups, and whether it may log in.
User = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    _required("name", String(128), unique=True),
    _optional("password_hash", String(255)),
    _required("groups", Json),
    _required("enabled", Boolean, default=True),
    _required("created_at", _TIME),
    _required("driver", String(32), default="builtin", server_default="builtin"),
)

# An API bearer token of a user; only its SHA-256 is stored, the secret is shown once at creation.
Token = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    _required("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE")),
    _required("name", String(128)),
    _required("token_hash", String(64), unique=True),
    _required("created_at", _TIME),
    _optional("expires_at", _TIME),
    _optional("last_used_at", _TIME),
    Index(None, "user_id"),
)

# An access rule (access is denied by default, a deny wins): a user, a group or everyone (``*``) may, or may
# not, do some actions on some kinds in some namespaces and stacks (globs; NULL stacks: every stack).
AccessRule = Table(
    "access_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    _required("subject_type", String(16)),
    _required("subject", String(128)),
    _required("actions", Json),
    _required("kinds", Json),
    _required("namespaces", Json),
    _required("created_at", _TIME),
    _required("effect", String(8), default="allow", server_default="allow"),
    _optional("stacks", Json),
)

# Limits for a group or a namespace, enforced at plan time; a NULL limit means unlimited.
Quota = Table(
    "quotas",
    metadata,
    Column("id", Integer, primary_key=True),
    _required("scope_type", String(16)),
    _required("scope", String(128)),
    _optional("vms", Integer),
    _optional("vcpu", Integer),
    _optional("memory", BigInteger),
    _optional("disk", BigInteger),
    UniqueConstraint("scope_type", "scope"),
)

# The service's view of each stack it reconciles (``nebctl status``, the metrics, the API): its sync status,
# the revision of its last sync, the manifests' problems, and a pending ``nebctl sync`` request.
StackStatus = Table(
    "stack_status",
    metadata,
    Column("stack", String(STACK_LENGTH), primary_key=True),
    _required("sync_status", String(STATE_LENGTH)),
    _optional("revision", String(128)),
    _optional("source", Json),
    _optional("message", Text),
    _required("problems", Json),
    _optional("last_sync_at", _TIME),
    _optional("last_sync_result", String(STATE_LENGTH)),
    _optional("last_apply_id", Integer),
    _optional("sync_requested_at", _TIME),
    _required("updated_at", _TIME),
)

# The health of each resource the service watches: healthy, progressing, degraded, unknown, out of sync; with
# the count of failed heals and when the next one may start (the per-resource backoff).
ResourceHealth = Table(
    "resource_health",
    metadata,
    Column("id", Integer, primary_key=True),
    _required("kind", String(KIND_LENGTH)),
    _required("namespace", String(NAME_LENGTH)),
    _required("name", String(NAME_LENGTH)),
    _required("stack", String(STACK_LENGTH)),
    _required("health", String(STATE_LENGTH)),
    _optional("message", Text),
    _required("failures", Integer, default=0),
    _optional("next_attempt_at", _TIME),
    _required("updated_at", _TIME),
    UniqueConstraint("kind", "namespace", "name"),
    Index(None, "stack"),
)

# What an apply applied: the commit of a git source (sha, author, subject) or the HEAD of a directory that is a
# git checkout, and whether its tree had uncommitted changes.
ApplyRevision = Table(
    "apply_revisions",
    metadata,
    Column("apply_id", Integer, ForeignKey("applies.id", ondelete="CASCADE"), primary_key=True),
    _required("sha", String(64)),
    _optional("author", String(255)),
    _optional("subject", Text),
    _required("dirty", Boolean, default=False),
    _optional("source", Text),
)
