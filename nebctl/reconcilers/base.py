"""What every per-kind reconciler provides, and the contexts it is given.

A reconciler knows one kind: which field changes apply in place, need a restart, force a replacement or cannot
be made (``rules``); how the live object differs from what was applied (``observe``, pure); which driver
actions realise a create, update, delete or replacement (``actions``, pure); and how to perform one of those
actions through the drivers (``realise``, the only impure part, called by the executor).

Resources that live on several hosts (datastores, images, networks, security groups) get one action per host,
so a failing host blocks only the VMs placed on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nebctl.controller.plans import Action, DriftItem, ResourceChange
from nebctl.drivers.protocols import MonitoringDriver, NetworkDriver, StorageDriver, VirtualizationDriver
from nebctl.drivers.states import HostLiveState
from nebctl.drivers.types import Appliance, HostProbe, HostRef, VMStatus
from nebctl.reconcilers.fields import Effect, FieldRule
from nebctl.schemas.keys import Kind, ResourceKey
from nebctl.schemas.models import AnyManifest

# Labels and annotations are the user's notes about a resource: no driver acts on them, but they are part of
# what was applied, so a change to them is planned (and shown) as a record-only update.
METADATA_RULE = FieldRule("metadata", Effect.NONE, "labels and annotations are recorded only")


def with_metadata(spec: dict[str, Any], document: AnyManifest) -> dict[str, Any]:
    """``spec`` plus the document's labels and annotations under ``metadata``: the document that is compared
    with, and recorded as, what was applied. Left out when both are empty, so that records written before
    metadata was recorded (and resources without labels) compare equal."""
    metadata = document.metadata
    if metadata.labels or metadata.annotations:
        recorded: dict[str, Any] = {}
        if metadata.labels:
            recorded["labels"] = dict(metadata.labels)
        if metadata.annotations:
            recorded["annotations"] = dict(metadata.annotations)
        spec["metadata"] = recorded
    return spec


class RecordView(Protocol):
    """The parts of a stored resource record that planning reads (the database's record type fits)."""

    @property
    def stack(self) -> str: ...

    @property
    def applied(self) -> Mapping[str, Any] | None: ...

    @property
    def status(self) -> str: ...

    @property
    def live(self) -> Mapping[str, Any]: ...

    @property
    def host(self) -> str | None: ...


@dataclass(frozen=True)
class LiveView:
    """What monitoring saw: one probe per host, every VM of every answering host."""

    hosts: Mapping[str, HostProbe] = field(default_factory=dict)
    vms: Mapping[str, VMStatus] = field(default_factory=dict)  # by uuid
    vm_hosts: Mapping[str, str] = field(default_factory=dict)  # uuid -> host name

    def host_answers(self, host: str | None) -> bool:
        """Whether ``host`` was probed and answered. Unprobed hosts count as not answering."""
        probe = self.hosts.get(host or "")
        return probe is not None and probe.state is not HostLiveState.ERROR


@dataclass(frozen=True)
class Observed:
    """The spec as it is now (what was applied, with live values laid over it) and the drift found."""

    spec: Mapping[str, Any] | None  # None: the object does not exist (never created, or deleted outside)
    drift: tuple[DriftItem, ...] = ()
    unknown: bool = False  # the live object cannot be seen (host not answering): nebctl must not act on it


@dataclass(frozen=True)
class PlanningContext:
    """Pure values a reconciler needs to turn a change into actions."""

    stack: str
    documents: Mapping[ResourceKey, AnyManifest]
    records: Mapping[ResourceKey, RecordView]
    hosts: Sequence[str]  # every host of the desired set, sorted
    spans: Mapping[ResourceKey, tuple[str, ...]]  # hosts a multi-host resource lives on (desired)
    placements: Mapping[ResourceKey, str]  # VM -> host chosen for this plan
    leases: Mapping[tuple[ResourceKey, int], str]  # (VM, NIC index) -> IP address
    disk_datastores: Mapping[tuple[ResourceKey, int], str]  # (VM, disk index) -> datastore name
    # The spec of each resource of the manifests as the planner resolved it (``desired_spec``, with metadata),
    # filled in before any ``actions`` call: a reconciler reads it there instead of resolving it again.
    specs: Mapping[ResourceKey, Mapping[str, Any]] = field(default_factory=dict)
    # The incarnation each VM of the manifests is (or is created as), where it is not 0 (``identity``).
    incarnations: Mapping[ResourceKey, int] = field(default_factory=dict)
    # VM -> the instance type placement chose for it, on a cloud host (the deploy launches that type).
    instance_types: Mapping[ResourceKey, str] = field(default_factory=dict)
    # (VM, NIC index) -> MAC address, unique in the installation (``planning``); a NIC missing here (a
    # context built by hand) gets its first derived MAC.
    macs: Mapping[tuple[ResourceKey, int], str] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionGroup:
    """The actions of one resource change, with the order among them."""

    actions: tuple[Action, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()

    def entries(self) -> list[Action]:
        targets = {after for _, after in self.edges}
        return [action for action in self.actions if action.id not in targets]

    def exits(self) -> list[Action]:
        sources = {before for before, _ in self.edges}
        return [action for action in self.actions if action.id not in sources]


class HostDrivers(Protocol):
    """The drivers serving one host, one per family that acts on hosts."""

    @property
    def virtualization(self) -> VirtualizationDriver: ...

    @property
    def storage(self) -> StorageDriver: ...

    @property
    def network(self) -> NetworkDriver: ...

    @property
    def monitoring(self) -> MonitoringDriver: ...


class LocalFile(Protocol):
    """An image source as a local file (``controller.sourcing.LocalImage`` fits)."""

    @property
    def path(self) -> str: ...

    @property
    def sha256(self) -> str | None: ...

    @property
    def transfer(self) -> Mapping[str, Any] | None: ...


class World(Protocol):
    """What ``realise`` may touch: the drivers, and the desired and recorded state of the apply in progress."""

    @property
    def stack(self) -> str: ...

    @property
    def shutdown_timeout(self) -> float: ...

    def drivers(self, host: str) -> HostDrivers: ...

    def host_ref(self, host: str) -> HostRef: ...

    def desired(self, key: ResourceKey) -> AnyManifest | None: ...

    def record(self, key: ResourceKey) -> RecordView | None: ...

    def appliance(self, marketplace: str, app: str, version: str | None = None) -> Appliance:
        """Resolve a marketplace appliance (at ``version``, else its newest) to an image source with its digest."""
        ...

    def fetch_image(self, source: str, *, sha256: str | None, size: int | None = None) -> LocalFile:
        """A local file holding ``source``: http(s) sources are downloaded once into the image cache."""
        ...


class Reconciler(Protocol):
    @property
    def kind(self) -> Kind: ...

    @property
    def rules(self) -> Sequence[FieldRule]:
        """Field rules; the most specific pattern covering a changed path decides its effect."""
        ...

    @property
    def default(self) -> FieldRule:
        """The rule of fields no pattern covers."""
        ...

    @property
    def sensitive(self) -> Sequence[str]:
        """Paths whose values never print (they show as ``(sensitive)``)."""
        ...

    def desired_spec(self, key: ResourceKey, document: AnyManifest, ctx: PlanningContext) -> dict[str, Any]:
        """The spec to compare and record: the manifest's spec with plan-resolved values (spans, leases)."""
        ...

    def observe(self, key: ResourceKey, record: RecordView, live: LiveView) -> Observed: ...

    def actions(self, change: ResourceChange, ctx: PlanningContext) -> ActionGroup: ...

    def realise(self, action: Action, world: World) -> Mapping[str, Any]:
        """Perform ``action``; return the patch to the record's ``live`` map (a None value removes a key)."""
        ...


def action_id(key: ResourceKey, *parts: object) -> str:
    """``vm/web-1:disk0:clone``; ``host`` parts make per-host actions distinct."""
    return ":".join([str(key), *(str(part) for part in parts)])


def per_host(
    key: ResourceKey,
    hosts: Sequence[str],
    *,
    family: Any,
    operation: str,
    description: str,
    params: Mapping[str, Any] | None = None,
) -> list[Action]:
    return [
        Action(
            id=action_id(key, operation, host),
            key=key,
            family=family,
            operation=operation,
            host=host,
            params=dict(params or {}),
            description=f"{description} on {host}",
        )
        for host in hosts
    ]
