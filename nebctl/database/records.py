"""Frozen values that the ``Store`` takes and returns: one dataclass per kind of row, no ORM objects.

The controller (diff, plan, executor), the CLI and the service only ever see these, so that no session, lazy
load or connection escapes the database layer. Times are aware UTC datetimes. Field names follow the columns
documented in ``docs/database.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from nebctl.core.keys import Kind, ResourceKey


class ApplyState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"  # some actions failed or were skipped, others succeeded
    INTERRUPTED = "interrupted"  # the process died or was stopped; the next apply resumes it


class ActionState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"  # its start is journalled; it runs as soon as a slot of the executor frees
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # something it depends on failed
    CANCELLED = "cancelled"  # the apply was stopped before or while it ran


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ResourceSummary:
    """A resource's place, status and health without its specs: what a listing of thousands shows (the
    dashboard). ``health`` is None when the service has not judged it (``message`` and ``failures`` then too)."""

    kind: Kind
    namespace: str
    name: str
    stack: str
    host: str | None
    status: str
    health: str | None = None
    message: str | None = None
    failures: int = 0


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    """A resource as the database knows it. ``created_at``/``updated_at`` are set by the store on save."""

    kind: Kind
    namespace: str
    name: str
    stack: str
    desired: dict[str, Any] | None = None
    desired_hash: str | None = None
    applied: dict[str, Any] | None = None
    applied_hash: str | None = None
    generation: int = 0
    status: str = "pending"
    live: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ObservationRecord:
    """What monitoring last saw of one resource, through the probe of ``host`` (``Store.record_observations``).

    ``state`` is the live state in the project's own words: for a VM ``running``, ``stopped``, ``suspended``,
    ``crashed``, ``transitioning``, ``absent`` (its host answered without it) or ``unknown`` (its host did not
    answer); for a host ``online``, ``error`` or ``disabled``. ``details`` holds what else was seen (a VM's
    host, vcpu and memory; a host's capacity and load; ``drift``: the differences from the record, as
    sentences). ``observed_at`` is set by the store's clock when left None. A host's own observation names
    itself as ``host``.
    """

    kind: Kind
    namespace: str
    name: str
    host: str
    state: str
    details: dict[str, Any] = field(default_factory=dict)
    observed_at: datetime | None = None

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.namespace, self.name)

    @property
    def drift(self) -> tuple[str, ...]:
        return tuple(str(item) for item in self.details.get("drift", ()))


@dataclass(frozen=True, slots=True)
class ApplyRecord:
    id: int
    stack: str
    revision: str | None
    holder: str
    state: str
    started_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any] | None
    plan: dict[str, Any]
    term: int | None = None  # the leader lease's term of the service replica that began it


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One journalled action. ``apply_id`` is filled in when read back; leave it None when journalling."""

    action_id: str
    kind: Kind
    namespace: str
    name: str
    family: str
    operation: str
    host: str | None = None
    depends_on: tuple[str, ...] = ()
    state: str = ActionState.PENDING
    attempts: int = 0
    error: str | None = None
    result: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    apply_id: int | None = None
    term: int | None = None  # the leader lease's term of its last write (None: written outside the service)

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ActionUpdate:
    """One state change of a journalled action, for ``update_actions``; None keeps the stored value."""

    action_id: str
    state: str
    attempts: int | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event. ``kind``/``namespace``/``name`` are None for events about no single resource (an apply)."""

    type: str
    message: str
    severity: str = Severity.INFO
    kind: Kind | None = None
    namespace: str | None = None
    name: str | None = None
    stack: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    time: datetime | None = None

    @property
    def key(self) -> ResourceKey | None:
        if self.kind is None or self.namespace is None or self.name is None:
            return None
        return ResourceKey(self.kind, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class HostSampleRecord:
    host: str
    time: datetime
    state: str
    cpu_total: int
    cpu_load: float
    memory_total: int
    memory_used: int
    disk_total: int
    disk_used: int
    attributes: dict[str, Any] = field(default_factory=dict)
    resolution: int = 0


@dataclass(frozen=True, slots=True)
class VMSampleRecord:
    namespace: str
    name: str
    host: str
    time: datetime
    state: str
    cpu: float
    memory_used: int
    disk_read_bytes: int = 0
    disk_write_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
    resolution: int = 0


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    id: int
    namespace: str
    name: str
    stack: str | None
    host: str
    started_at: datetime
    ended_at: datetime | None
    vcpu: int
    memory: int
    disk: int
    reason: str
    end_reason: str | None
    state: str = "running"
    owner: str | None = None
    instance_type: str | None = None  # the cloud instance type it ran as; None off the cloud


@dataclass(frozen=True, slots=True)
class HistoryOpening:
    """A placement record to start (``open_histories``): ``vm`` is placed on ``host`` with these sizes, in
    ``state`` (``running``, ``stopped``, ``suspended``), by ``owner``, as ``instance_type`` on a cloud host."""

    vm: ResourceKey
    host: str
    vcpu: int
    memory: int
    disk: int
    reason: str
    stack: str | None = None
    state: str = "running"
    owner: str | None = None
    instance_type: str | None = None


# A placement record as showback reads it (``TelemetryOperations.history_spans``): namespace, name, host, stack,
# owner, state, started_at and ended_at (whole microseconds since 1970-01-01 UTC; ended_at None while open),
# vcpu, memory and disk bytes, and the cloud instance type (None off the cloud).
HistorySpan = tuple[str, str, str, str | None, str | None, str, int, int | None, int, int, int, str | None]


class ShowbackRow(NamedTuple):
    """The priced usage of one VM on one host in one month (the ``showback`` table); hours and costs as
    ``accounting.pricing`` computes them. A named tuple: a large fleet's month is tens of thousands of rows,
    and a frozen dataclass's per-field ``__setattr__`` made building them most of pricing's time."""

    month: str  # YYYY-MM
    namespace: str
    name: str
    stack: str | None
    owner: str | None
    host: str
    running_hours: float
    stopped_hours: float
    vcpu_hours: float
    memory_gib_hours: float
    disk_gib_hours: float
    cpu_cost: float
    memory_cost: float
    disk_cost: float
    cost: float
    currency: str
    instance_type: str | None = None  # priced per hour of this cloud instance type (cpu_cost); None: per vCPU
    computed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class HookRunRecord:
    hook: str
    event: str
    exit_code: int | None
    duration: float
    stdout: str = ""
    stderr: str = ""
    namespace: str = "default"
    event_id: int | None = None
    timed_out: bool = False
    started_at: datetime | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class LockRecord:
    name: str
    holder: str
    host: str
    pid: int
    acquired_at: datetime
    expires_at: datetime
    token: str

    def describe(self) -> str:
        """How a user reads it: who, where, since when (error messages, ``nebctl unlock``)."""
        return (
            f"{self.holder} on host {self.host}, pid {self.pid}, since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC"
            f" (expires {self.expires_at:%Y-%m-%d %H:%M:%S} UTC)"
        )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    name: str
    holder: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    term: int


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    """A running (or lately running) replica of ``nebctl serve``; times are the database's clock."""

    id: str
    lease: str
    host: str
    pid: int
    listen: str | None
    role: str  # leader | follower
    term: int | None
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    password_hash: str | None
    groups: tuple[str, ...]
    enabled: bool
    created_at: datetime
    driver: str = "builtin"  # builtin | exec


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    user_id: int
    user: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class AccessRuleRecord:
    id: int
    subject_type: str  # user | group | everyone
    subject: str
    actions: tuple[str, ...]
    kinds: tuple[str, ...]
    namespaces: tuple[str, ...]
    created_at: datetime
    effect: str = "allow"  # allow | deny
    stacks: tuple[str, ...] = ("*",)


@dataclass(frozen=True, slots=True)
class QuotaRecord:
    scope_type: str  # group | namespace
    scope: str
    vms: int | None = None
    vcpu: int | None = None
    memory: int | None = None
    disk: int | None = None


class SyncStatus(StrEnum):
    """A stack's sync status, as the service keeps it."""

    SYNCED = "synced"
    OUT_OF_SYNC = "out of sync"
    PROGRESSING = "progressing"
    DEGRADED = "degraded"
    UNKNOWN = "unknown"


class Health(StrEnum):
    """A resource's health, as the service keeps it."""

    HEALTHY = "healthy"
    PROGRESSING = "progressing"
    OUT_OF_SYNC = "out of sync"
    DEGRADED = "degraded"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RevisionRecord:
    """What an apply applied: a commit (``dirty`` when a checkout had uncommitted changes) and where from."""

    sha: str
    author: str | None = None
    subject: str | None = None
    dirty: bool = False
    source: str | None = None

    @property
    def label(self) -> str:
        """The revision as shown and stored on the apply: the short sha, marked when the tree was dirty."""
        return self.sha[:12] + ("-dirty" if self.dirty else "")


@dataclass(frozen=True, slots=True)
class StackStatusRecord:
    stack: str
    sync_status: str
    revision: str | None = None
    source: dict[str, Any] | None = None
    message: str | None = None
    problems: tuple[str, ...] = ()
    last_sync_at: datetime | None = None
    last_sync_result: str | None = None
    last_apply_id: int | None = None
    sync_requested_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ResourceHealthRecord:
    kind: Kind
    namespace: str
    name: str
    stack: str
    health: str
    message: str | None = None
    failures: int = 0
    next_attempt_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class RunningProgramRecord:
    """An external program started by a nebctl process, recorded while it runs (``running_programs``)."""

    host: str
    boot_id: str
    pgid: int
    leader_started: int  # the group leader's start time, clock ticks after boot
    owner_pid: int  # the nebctl process that started it
    owner_started: int
    label: str
    id: int | None = None
    started_at: datetime | None = None
