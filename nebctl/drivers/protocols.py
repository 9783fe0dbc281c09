"""One small typed Protocol per driver family.

A driver is a class implementing its family's protocol; the registry checks it against the protocol when it is
registered. Every method is synchronous and may block: the executor runs it in a worker thread with a timeout.
Per-call settings that are not part of the domain (the deadline, a cancel flag, the log) reach a driver
through ``drivers.context.current()``, so the signatures stay the domain's.

Conventions every driver follows, and the contract suite (tests/contract) checks:
- Creating actions are idempotent: deploying, importing, cloning or creating something that already exists
  with the same identity returns it (and updates its definition where the family says so) without duplicating.
- Actions on a missing object raise ``NotFoundError``; the executor treats that as success for deletes.
- Backend exceptions never escape: they are converted to ``drivers.errors`` types, chained with ``from``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from nebctl.core.families import Family
from nebctl.drivers.types import (
    Appliance,
    AuthorizationRequest,
    DatastoreDefinition,
    DatastoreStatus,
    HookProgram,
    HookResult,
    HostProbe,
    HostRef,
    Identity,
    ImageImport,
    MarketplaceRef,
    NetworkDefinition,
    NetworkStatus,
    NicDefinition,
    OwnedObject,
    Ownership,
    SecurityGroupDefinition,
    VMDefinition,
    VMStatus,
    VolumeDefinition,
    VolumeInfo,
)


@runtime_checkable
class Driver(Protocol):
    """What every driver of every family has: its registered name, its family and what it can do."""

    name: ClassVar[str]
    family: ClassVar[Family]
    capabilities: ClassVar[frozenset[str]]


@runtime_checkable
class VirtualizationDriver(Driver, Protocol):
    def deploy(self, host: HostRef, vm: VMDefinition, *, start: bool = True) -> VMStatus:
        """Define the VM (keyed by ``vm.uuid``; an existing one takes the new definition while stopped) and
        start it unless ``start`` is false. Deploying twice gives one VM."""
        ...

    def shutdown(self, host: HostRef, uuid: str, *, timeout: float) -> bool | None:
        """Graceful stop (ACPI); a hard stop once ``timeout`` seconds have passed. A stopped VM is left alone.
        Returns False when it had to stop the VM hard, True when the guest stopped by itself, None when the
        driver cannot tell."""
        ...

    def cancel(self, host: HostRef, uuid: str) -> None:
        """Hard stop at once."""
        ...

    def reboot(self, host: HostRef, uuid: str) -> None: ...

    def suspend(self, host: HostRef, uuid: str) -> None: ...

    def resume(self, host: HostRef, uuid: str) -> None: ...

    def migrate(self, source: HostRef, target: HostRef, vm: VMDefinition, *, live: bool = False) -> VMStatus:
        """Move the VM to ``target``: live where the hypervisor can and ``live`` is asked, cold otherwise."""
        ...

    def undeploy(self, host: HostRef, uuid: str) -> None:
        """Stop the VM (hard) and remove its definition. Its disks are the storage driver's business."""
        ...

    def poll(self, host: HostRef, uuid: str) -> VMStatus: ...


@runtime_checkable
class StorageDriver(Driver, Protocol):
    def create_datastore(self, host: HostRef, datastore: DatastoreDefinition) -> DatastoreStatus: ...

    def delete_datastore(self, host: HostRef, name: str) -> None:
        """Remove the pool's definition; refuses (``ConflictError``) while it holds volumes."""
        ...

    def import_image(self, host: HostRef, datastore: str, image: ImageImport) -> VolumeInfo:
        """Copy the image into the datastore, verifying ``sha256`` when given and detecting the format."""
        ...

    def clone(self, host: HostRef, datastore: str, volume: VolumeDefinition) -> VolumeInfo:
        """Create a VM disk: a clone of ``volume.backing`` (overlay or full copy) grown to ``volume.size``, or a
        blank disk of that size when there is no backing volume."""
        ...

    def resize(self, host: HostRef, datastore: str, volume: str, size: int) -> VolumeInfo:
        """Grow a volume; shrinking raises ``PermanentError``."""
        ...

    def delete(self, host: HostRef, datastore: str, volume: str) -> None: ...

    def snapshot(self, host: HostRef, datastore: str, volume: str, snapshot: str) -> VolumeInfo: ...

    def monitor(self, host: HostRef, datastore: str) -> DatastoreStatus:
        """Capacity of the datastore and every volume in it, in one call."""
        ...


@runtime_checkable
class NetworkDriver(Driver, Protocol):
    def create(self, host: HostRef, network: NetworkDefinition) -> NetworkStatus: ...

    def delete(self, host: HostRef, name: str) -> None: ...

    def pre(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        """Before boot: reserve the NIC's address (static DHCP entry) and prepare its filters."""
        ...

    def post(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        """After boot: anything that needs the running VM (filters bound to its tap device)."""
        ...

    def clean(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        """After the VM is gone: release the address and the NIC's filters."""
        ...

    def update_sg(self, host: HostRef, group: SecurityGroupDefinition) -> None:
        """Create or replace the rules of a security group on the host."""
        ...

    def delete_sg(self, host: HostRef, name: str) -> None: ...

    def monitor(self, host: HostRef) -> Mapping[str, NetworkStatus]:
        """Every network of the host, in one call."""
        ...


@runtime_checkable
class MonitoringDriver(Driver, Protocol):
    def probe_host(self, host: HostRef) -> HostProbe:
        """Capacity and usage. A host that does not answer gives a probe in state ERROR, not an exception."""
        ...

    def probe_vms(self, host: HostRef) -> Sequence[VMStatus]:
        """Every VM of the host, in one call (never one call per VM)."""
        ...


@runtime_checkable
class InventoryDriver(Protocol):
    """What a monitoring driver may add: every owned live object of a host other than its VMs (networks,
    pools, volumes, filters), in one call or a few, never one per object. ``nebctl recover`` rebuilds records
    from it and planning refuses to create over what it lists without a record; a driver without it leaves
    only its VMs (``probe_vms``) to both."""

    def inventory(self, host: HostRef) -> Sequence[OwnedObject]: ...


@runtime_checkable
class OwnershipDriver(Protocol):
    """What a monitoring driver may add: write the ownership of one live object again, leaving the object
    itself as it is. The planner asks for it where a change only alters what the ownership carries (a
    resource's labels or annotations), so that ``nebctl recover`` rebuilds what was last applied. ``what`` and
    ``name`` are as ``inventory`` lists the object, or ``("vm", UUID)``; ``pool`` is a volume's pool. A driver
    without it keeps the ownership the object was made with (docs/ownership.md)."""

    def own(self, host: HostRef, what: str, name: str, owner: Ownership, *, pool: str = "") -> None: ...


@runtime_checkable
class ObservationTokenDriver(Protocol):
    """What a monitoring driver may add: one word for many hosts, equal between two calls only when each host's
    probe, VMs and listing would report the same, usage figures aside (CPU, memory used, I/O: they move with the
    clock, and no plan that is kept reads them). None when the driver cannot vouch for that. A caller that saw
    the same word before and after an observation may take later calls returning it as that observation again:
    ``diff`` and ``apply`` keep a plan that changed nothing and reuse it while every input, this word included,
    is as it was (``controller.kept_plans``). The sim has it (its file counts its changes); a backend without a
    cheap version of its state leaves it out and is observed every time."""

    def observation_token(self, hosts: Sequence[HostRef]) -> str | None: ...


@runtime_checkable
class HostTokensDriver(Protocol):
    """What a monitoring driver may add beside ``observation_token``: a word for each host, equal between two calls
    only when that host's probe, VMs and listing would report the same, usage figures aside; None when the driver
    cannot vouch for that. A caller that kept an observation probes again only the hosts whose word moved since
    (an apply acts on a few hosts), and takes the others as observed then (``controller.kept_observations``). The
    sim has it (its file counts each host's changes too)."""

    def host_tokens(self, hosts: Sequence[HostRef]) -> Mapping[str, str] | None: ...


@runtime_checkable
class AuthorizationDriver(Driver, Protocol):
    def authenticate(self, user: str, secret: str) -> Identity:
        """The identity and groups of ``user``; ``PermanentError`` when the secret is wrong."""
        ...

    def authorize(self, request: AuthorizationRequest) -> bool: ...


@runtime_checkable
class MarketplaceDriver(Driver, Protocol):
    def list(self, marketplace: MarketplaceRef) -> Sequence[Appliance]:
        """Every appliance of the catalogue, each version on its own, by name and then newest first."""
        ...

    def import_(self, marketplace: MarketplaceRef, app: str, *, version: str | None = None) -> Appliance:
        """Resolve ``app`` (at ``version``, else its newest) to an image source with its digest, ready for
        ``StorageDriver.import_image``; ``NotFoundError`` naming it when the catalogue lacks it, and
        ``PermanentError`` when it is listed but cannot be imported (no sha256)."""
        ...


@runtime_checkable
class HookDriver(Driver, Protocol):
    def run(self, hook: HookProgram, payload: Mapping[str, Any]) -> HookResult:
        """Run the hook with ``payload`` as JSON on stdin, killing it after ``hook.timeout``."""
        ...


PROTOCOL_BY_FAMILY: dict[Family, type[object]] = {
    Family.VIRTUALIZATION: VirtualizationDriver,
    Family.STORAGE: StorageDriver,
    Family.NETWORK: NetworkDriver,
    Family.MONITORING: MonitoringDriver,
    Family.AUTHORIZATION: AuthorizationDriver,
    Family.MARKETPLACE: MarketplaceDriver,
    Family.HOOKS: HookDriver,
}
