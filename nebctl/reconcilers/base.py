"""What every per-kind reconciler provides, and the contexts it is given.

A reconciler knows one kind: which field changes apply in place, need a restart, force a replacement or cannot
be made (``rules``); which resources a spec names (``references``); how the live object differs from what was
applied (``detect_drift``, pure); which driver actions realise a create, update, delete or replacement, in which
phase each (``actions``, pure); what its record holds once applied (``finished``); and how to perform one of
those actions through the drivers (``realise``, the only impure part, called by the executor).

Resources that live on several hosts (datastores, images, networks, security groups) get one action per host,
so a failing host blocks only the VMs placed on it.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

from nebctl.core.fields import Effect, FieldChange, FieldRule
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Action, DriftItem, Phase, ResourceChange
from nebctl.drivers.errors import CapabilityError
from nebctl.drivers.registry import HostDriverSet
from nebctl.drivers.states import HostLiveState
from nebctl.drivers.types import Appliance, HostProbe, HostRef, Ownership, VMStatus
from nebctl.schemas.models import AnyManifest
from nebctl.schemas.references import Reference

# Labels and annotations are the user's notes about a resource: no driver acts on them, but they are part of
# what was applied, so a change to them is planned (and shown) as a record-only update.
METADATA_RULE = FieldRule("metadata", Effect.NONE, "labels and annotations are recorded only")


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
    # Per host whose objects were listed (its monitoring driver's ``inventory``): the (object, live name) pairs
    # there, such as ("network", "lan"). A host missing here was not listed: nothing is judged absent on it.
    objects: Mapping[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    # Per listed host, the fingerprint of each (object, live name) whose driver read one (``OwnedObject``'s):
    # compared with the applied spec. An object without one is judged by its presence only.
    fingerprints: Mapping[str, Mapping[tuple[str, str], Mapping[str, str]]] = field(default_factory=dict)
    # The drivers' word for the state this view saw (``ObservationTokenDriver``), when every host's driver gave
    # one and it did not change while the view was made; None otherwise. Planning never reads it.
    token: str | None = None
    # Each host's word (``HostTokensDriver``), by host name, when every host's driver gave one and none changed
    # while the view was made; None otherwise: a later observation probes again only the hosts whose word moved.
    host_tokens: Mapping[str, str] | None = field(default=None, compare=False)
    # Names this very view (random, given when it was made), kept with it: equal identities are one observation,
    # read back from where it was kept. A plan made from a kept trace compares nothing it read of a view of the
    # identity it was made from. None: a view made without one (the service's monitoring, tests).
    identity: bytes | None = field(default=None, compare=False)
    # The views this one was made from by probing some hosts again (``observing.observe_again``), nearest first:
    # each one's identity and the hosts probed again since it; the other hosts are as that view saw them.
    probed_since: tuple[tuple[bytes, frozenset[str]], ...] = field(default=(), compare=False)

    def hosts_probed_since(self, identity: bytes | None) -> frozenset[str] | None:
        """The hosts probed again since the view of ``identity``, when this view was made from it by probing hosts
        again (``probed_since``); None when it was not."""
        for ancestor, hosts in self.probed_since:
            if ancestor == identity:
                return hosts
        return None

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
    # The hosts whose live object differs from what was applied (a spanned kind's fingerprint): left out of
    # ``spec``'s hosts, as a deleted one is, but repaired where it is rather than only created.
    changed: tuple[str, ...] = ()
    # The hosts of ``changed`` whose object is repaired by deleting it and creating it again (not in place):
    # the planner refuses that repair where a VM still holds the object (``Reconciler.holds``).
    rebuilt: tuple[str, ...] = ()


class PlanInputs(Protocol):
    """What a plan is made from, as a reconciler's ``resolve`` reads it (``planning.PlanRequest`` fits)."""

    @property
    def stack(self) -> str: ...

    @property
    def documents(self) -> Mapping[ResourceKey, AnyManifest]: ...

    @property
    def records(self) -> Mapping[ResourceKey, RecordView]: ...  # every record of the database, all stacks

    @property
    def prune(self) -> bool: ...

    @property
    def mac_bits(self) -> int: ...  # of the digest a derived MAC takes (``identity.mac_address``)


@dataclass(frozen=True)
class Resolution:
    """What a kind's ``resolve`` settles for the whole plan before anything is compared, keyed by (resource,
    index): each NIC's address and MAC, each disk's datastore. The planner hands it to every reconciler in the
    ``PlanningContext``."""

    leases: Mapping[tuple[ResourceKey, int], str] = field(default_factory=dict)
    macs: Mapping[tuple[ResourceKey, int], str] = field(default_factory=dict)
    disk_datastores: Mapping[tuple[ResourceKey, int], str] = field(default_factory=dict)


@dataclass(frozen=True)
class SharedInputs:
    """What a plan's installation-wide steps read of one manifest or record, as values compared with ``==``:
    ``placing``, what placement reads (a VM's size, its rules, its current host), and ``resolving``, what the other
    steps read (addresses, MACs, disk datastores, incarnations). ``Reconciler.shared_inputs`` gives them."""

    placing: object = None
    resolving: object = None


@dataclass(frozen=True)
class Removals:
    """What a plan takes away, for each staying resource's ``still_uses``: the resources deleted or replaced
    (``going``), deleted only, updated, the spanned resources each host loses (``leaving``, by host), and the
    changed field paths of each updated resource."""

    going: Set[ResourceKey]
    deleted: Set[ResourceKey]
    updated: Set[ResourceKey]
    leaving: Mapping[str, Set[ResourceKey]]
    touched_paths: Mapping[ResourceKey, Sequence[str]]


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
    # The spec of each resource as it is now, where drift makes it differ from what was applied (``detect_drift``'s
    # ``Observed.spec``), filled in with ``specs``: a network deleted on one host is created there again.
    observed: Mapping[ResourceKey, Mapping[str, Any]] = field(default_factory=dict)
    # The hosts where drift found a resource's live object changed outside nebctl (``Observed.changed``), filled
    # in with ``observed``: each is repaired there, in place or by creating it again.
    changed: Mapping[ResourceKey, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionGroup:
    """The actions of one resource change, the order among them, and each action's phase (``phases[i]`` is that
    of ``actions[i]``): the reconciler knows which of its actions build and which release or destroy."""

    actions: tuple[Action, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()
    phases: tuple[Phase, ...] = ()

    def __post_init__(self) -> None:
        if len(self.phases) != len(self.actions):
            raise ValueError(f"{len(self.actions)} actions but {len(self.phases)} phases")

    @classmethod
    def of(cls, actions: Sequence[Action], phase: Phase, edges: Sequence[tuple[str, str]] = ()) -> ActionGroup:
        """A group whose actions are all in one phase."""
        return cls(tuple(actions), tuple(edges), (phase,) * len(actions))

    def entries(self) -> list[Action]:
        targets = {after for _, after in self.edges}
        return [action for action in self.actions if action.id not in targets]

    def exits(self) -> list[Action]:
        sources = {before for before, _ in self.edges}
        return [action for action in self.actions if action.id not in sources]


class LocalFile(Protocol):
    """An image source as a local file (``controller.sourcing.LocalImage`` fits)."""

    @property
    def path(self) -> str: ...

    @property
    def sha256(self) -> str | None: ...

    @property
    def transfer(self) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class Usage:
    """What a resource holds of its host, for the placement history (accounting) and other stacks' quota share."""

    vcpu: int
    memory: int
    disk: int
    state: str = "running"  # its declared state while it holds them (running, stopped, suspended)


@dataclass(frozen=True)
class Finished:
    """What the apply's journal records of a resource once all its actions are done, read from its final spec."""

    host: str | None = None  # where it runs, for a kind placed on one host; None keeps the record's host
    status: str | None = None  # the record's status (a VM's state, "running"...); None: "ready"
    usage: Usage | None = None  # what it holds of ``host``, opened in the placement history when it changed


# A create-first replacement splits a record: the deposed record's key and live part, and the live part the
# resource's own record starts again from.
Deposition = tuple[ResourceKey, dict[str, Any], dict[str, Any]]


class World(Protocol):
    """What ``realise`` may touch: the drivers, and the desired and recorded state of the apply in progress."""

    @property
    def stack(self) -> str: ...

    @property
    def shutdown_timeout(self) -> float: ...

    def drivers(self, host: str) -> HostDriverSet: ...

    def host_ref(self, host: str) -> HostRef: ...

    def ownership(self, key: ResourceKey, incarnation: int = 0) -> Ownership:
        """What to write on the live objects of ``key`` (incarnation ``incarnation`` of a VM): the stack, the
        installation, and the spec being applied with its secrets sealed (docs/ownership.md)."""
        ...

    def desired(self, key: ResourceKey) -> AnyManifest | None: ...

    def record(self, key: ResourceKey) -> RecordView | None: ...

    def appliance(self, marketplace: str, app: str, version: str | None = None) -> Appliance:
        """Resolve a marketplace appliance (at ``version``, else its newest) to an image source with its digest."""
        ...

    def fetch_image(self, source: str, *, sha256: str | None, size: int | None = None) -> LocalFile:
        """A local file holding ``source``: http(s) sources are downloaded once into the image cache."""
        ...


class Reconciler(Protocol):
    """A kind's whole contract: nothing outside its reconciler knows the kind's fields, references, actions,
    phases or what its record holds once applied. The planner, the executor and the journal reach a kind only
    through this (``catalogue.RECONCILERS``)."""

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

    @property
    def placed(self) -> bool:
        """Whether a resource of this kind runs on one host the planner chooses (a VM): its record's host is the
        planned one, and what it holds there is accounted (``finished``'s usage, closed when it is deleted)."""
        ...

    @property
    def per_host(self) -> bool:
        """Whether a resource of this kind acts on each host apart (a host, a resource spanning hosts): what
        depends on it on one host waits only for its actions there."""
        ...

    def references(self, key: ResourceKey, spec: Mapping[str, Any]) -> list[Reference]:
        """The resources ``spec`` names (a manifest's, a resolved or a recorded spec): the planner builds a
        resource after them and destroys them after it; validation reports those that do not exist."""
        ...

    def span(
        self,
        key: ResourceKey,
        document: AnyManifest,
        documents: Mapping[ResourceKey, AnyManifest],
        hosts: Sequence[str],
    ) -> tuple[str, ...] | None:
        """The hosts a multi-host resource lives on, of ``hosts`` (every host of the manifests); None for a kind
        that does not live on a set of hosts."""
        ...

    def resolve(
        self,
        request: PlanInputs,
        own: Mapping[ResourceKey, RecordView],
        *,
        spans: Mapping[ResourceKey, tuple[str, ...]],
        placements: Mapping[ResourceKey, str],
        incarnations: Mapping[ResourceKey, int],
        deposing: frozenset[ResourceKey],
        problems: list[str],
    ) -> Resolution:
        """What the plan settles for this kind's resources of the manifests, with the whole installation in view
        (``own``: this stack's records; ``deposing``: those a create-first replacement deposes): a VM's leases,
        MACs and disk datastores. Every reason it cannot is appended to ``problems``."""
        ...

    def desired_spec(self, key: ResourceKey, document: AnyManifest, ctx: PlanningContext) -> dict[str, Any]:
        """The spec to compare and record: the manifest's spec with plan-resolved values (spans, leases)."""
        ...

    def detect_drift(self, key: ResourceKey, record: RecordView, live: LiveView) -> Observed:
        """The spec as it is now (what was applied, with what monitoring saw laid over it) and the drift found.
        Pure: the probing itself is ``controller.observing``'s."""
        ...

    def refusals(self, key: ResourceKey, fields: Sequence[FieldChange], effect: Effect) -> list[str]:
        """What the kind refuses of a change whose field changes are ``fields`` (dearest: ``effect``), beyond
        the immutable fields its rules name: each a problem the plan reports (a VM's disks only grow)."""
        ...

    def ignored(self, document: AnyManifest) -> tuple[str, ...]:
        """Paths whose changes the manifest asks the plan to leave alone (a VM's ``lifecycle.ignoreChanges``)."""
        ...

    def creates_first(self, document: AnyManifest) -> bool:
        """Whether the manifest asks for a replacement's new object before the old one goes (a VM's
        ``lifecycle.createBeforeDestroy``); the planner then deposes the old one (``depose``)."""
        ...

    def shared_inputs(self, document: AnyManifest) -> SharedInputs | None:
        """What the plan's installation-wide steps read of a manifest of this kind; None when they may read any
        of it. A planner that plans again after an edit (``planning.incremental``) redoes only the edited
        resources when these stay equal for each of them (or, for ``placing``, when placing every VM again
        gives every VM the same host); any other edit means planning everything."""
        ...

    def shared_record_inputs(self, record: RecordView) -> SharedInputs | None:
        """The same for a record of this kind: what those steps read of it; None when they may read any of it."""
        ...

    def still_uses(
        self,
        key: ResourceKey,
        record: RecordView,
        document: AnyManifest | None,
        specs: Mapping[ResourceKey, Mapping[str, Any]],
        removals: Removals,
    ) -> list[str]:
        """What the resource ``key``, which stays (its ``record`` applied), still uses of what the plan takes
        away (``removals``): each a problem the plan reports (a VM's backing image, network or host)."""
        ...

    def holds(self, key: ResourceKey, record: RecordView, target: ResourceKey) -> str | None:
        """How the live object of ``key`` (its ``record`` applied) holds that of ``target`` on its host, so that
        the target cannot be deleted there under it: "is attached to it (nics[0])"; None when it does not. The
        planner refuses to repair a changed object by deleting and creating it again while one holds it."""
        ...

    def actions(self, change: ResourceChange, ctx: PlanningContext) -> ActionGroup:
        """The driver actions of ``change``, their order and their phases."""
        ...

    def depose(
        self, key: ResourceKey, live: Mapping[str, Any], taken: Container[ResourceKey] = frozenset()
    ) -> Deposition:
        """How a create-first replacement splits the record of ``key`` (whose live part is ``live``); only kinds
        that honour ``lifecycle.createBeforeDestroy`` are asked. Pure: the planner makes a view of it, and the
        apply's journal writes it before any action."""
        ...

    def finished(self, spec: Mapping[str, Any]) -> Finished:
        """What the record of a resource whose final spec is ``spec`` holds once all its actions succeeded."""
        ...

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


class PlainKind:
    """The protocol's answers for a kind with nothing to settle across the installation, no guard beyond its
    references, no ignored fields and one incarnation: every kind but the VM. Its reconciler inherits them."""

    kind: Kind

    def resolve(
        self,
        request: PlanInputs,
        own: Mapping[ResourceKey, RecordView],
        *,
        spans: Mapping[ResourceKey, tuple[str, ...]],
        placements: Mapping[ResourceKey, str],
        incarnations: Mapping[ResourceKey, int],
        deposing: frozenset[ResourceKey],
        problems: list[str],
    ) -> Resolution:
        return Resolution()

    def still_uses(
        self,
        key: ResourceKey,
        record: RecordView,
        document: AnyManifest | None,
        specs: Mapping[ResourceKey, Mapping[str, Any]],
        removals: Removals,
    ) -> list[str]:
        return []

    def refusals(self, key: ResourceKey, fields: Sequence[FieldChange], effect: Effect) -> list[str]:
        return []

    def holds(self, key: ResourceKey, record: RecordView, target: ResourceKey) -> str | None:
        return None

    def ignored(self, document: AnyManifest) -> tuple[str, ...]:
        return ()

    def creates_first(self, document: AnyManifest) -> bool:
        return False

    def shared_inputs(self, document: AnyManifest) -> SharedInputs | None:
        return None  # hosts, networks, images, datastores: what every VM's resolution and every span reads

    def shared_record_inputs(self, record: RecordView) -> SharedInputs | None:
        return None

    def depose(
        self, key: ResourceKey, live: Mapping[str, Any], taken: Container[ResourceKey] = frozenset()
    ) -> Deposition:
        raise ValueError(f"{key}: a {self.kind.value} is never replaced create-first")

    def finished(self, spec: Mapping[str, Any]) -> Finished:
        return Finished()


def write_ownership(world: World, host: str, what: str, name: str, owner: Ownership, *, pool: str = "") -> None:
    """Write ``owner`` on the live object (``what``, ``name``) of ``host`` through its monitoring driver's
    ``own`` (``drivers.protocols.OwnershipDriver``). A driver without it, or one that cannot for this object
    (libvirt's networks), leaves the ownership the object was made with: the change is still recorded, and only
    ``nebctl recover`` would rebuild the older spec (docs/ownership.md)."""
    own = getattr(world.drivers(host).monitoring, "own", None)
    if own is None:
        return
    try:
        own(world.host_ref(host), what, name, owner, pool=pool)
    except CapabilityError:
        return
