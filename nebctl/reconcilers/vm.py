"""Virtual machines: what each field change costs, the driver actions of each change, and drift.

A new VM is its disks cloned, its NICs prepared (address reservation, filters), then deployed (define + start)
and its NICs finished. vcpu, memory, disks, NICs and direct kernel boot settings change with a restart (graceful
shutdown, the change, start); the image, clone mode or cloud-init data of a disk force a replacement; the
requested state (running, stopped, suspended) and the host (migration) change in place. Deletion stops and
undefines the VM, then releases its addresses and deletes its disks.

The spec that is compared and recorded carries what the plan resolved: the host, each NIC's address and MAC,
each disk's datastore. So a lease or a placement, once applied, is sticky.

A replacement is a deletion then a creation, unless ``lifecycle.createBeforeDestroy`` asks for the new VM first:
then the new VM is the next incarnation (identities of its own, see ``identity``) and the old one is *deposed*,
kept under a record of its own that is deleted once the new VM runs (``deposition``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Container, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from nebctl.core.families import Family
from nebctl.core.fields import Effect, FieldChange, FieldRule
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Action, ChangeType, DriftItem, Phase, ResourceChange
from nebctl.core.quantities import format_quantity
from nebctl.drivers.errors import NotFoundError, PermanentError
from nebctl.drivers.states import VMLiveState
from nebctl.drivers.types import (
    BootDefinition,
    CloudInitData,
    DiskAttachment,
    NicDefinition,
    VMDefinition,
    VolumeDefinition,
)
from nebctl.reconcilers.base import (
    METADATA_RULE,
    ActionGroup,
    Deposition,
    Finished,
    LiveView,
    Observed,
    PlanInputs,
    PlanningContext,
    RecordView,
    Removals,
    Resolution,
    SharedInputs,
    Usage,
    World,
    action_id,
    write_ownership,
)
from nebctl.reconcilers.identity import (
    VMIdentity,
    deposed_key,
    image_volume,
    live_name,
    mac_address,
    security_group_filter,
)
from nebctl.reconcilers.vm_guards import vm_holds, vm_still_uses
from nebctl.reconcilers.vm_resolution import (
    disk_datastores_of,
    lease_addresses,
    mac_addresses,
    vm_record_shared_inputs,
    vm_shared_inputs,
)
from nebctl.schemas.instance_types import KNOWN as KNOWN_INSTANCE_TYPES
from nebctl.schemas.instance_types import smallest_fitting
from nebctl.schemas.models import AnyManifest, Host, Image, VirtualMachine, spec_document
from nebctl.schemas.references import Reference, of_virtual_machine

RULES = [
    FieldRule("state", Effect.IN_PLACE, "the VM is started, stopped, suspended or resumed"),
    FieldRule("host", Effect.IN_PLACE, "the VM migrates"),
    FieldRule("vcpu", Effect.RESTART, "vCPUs change while the VM is stopped"),
    FieldRule("memory", Effect.RESTART, "memory changes while the VM is stopped"),
    FieldRule("disks", Effect.RESTART, "disks are attached or detached while the VM is stopped"),
    FieldRule("disks[*].size", Effect.RESTART, "the disk grows while the VM is stopped"),
    FieldRule("disks[*].image", Effect.REPLACE, "a disk cannot change its image"),
    FieldRule("disks[*].clone", Effect.REPLACE, "a disk cannot change how it was cloned"),
    FieldRule("disks[*].datastore", Effect.REPLACE, "a disk cannot move to another datastore"),
    FieldRule("nics", Effect.RESTART, "NICs change while the VM is stopped"),
    FieldRule("cloudInit", Effect.REPLACE, "cloud-init data is read at first boot only"),
    FieldRule("boot", Effect.RESTART, "the kernel, initrd and command line are loaded when the VM starts"),
    FieldRule("placement", Effect.NONE, "placement rules apply when the VM is placed"),
    FieldRule("lifecycle", Effect.NONE, "nebctl's own settings"),
    FieldRule("dependsOn", Effect.NONE, "ordering only"),
    METADATA_RULE,
]
DEFAULT = FieldRule("", Effect.REPLACE, "this field cannot change in place")
SENSITIVE = ["cloudInit"]
# The actions that define the VM again, its ownership with it: after one, nothing more needs writing.
DEFINING = frozenset({"deploy", "migrate"})

# The spec's state a live VM is in; TRANSITIONING and UNKNOWN have none (no drift is read from them).
STATE_FROM_LIVE = {
    VMLiveState.RUNNING: "running",
    VMLiveState.STOPPED: "stopped",
    VMLiveState.CRASHED: "stopped",
    VMLiveState.SUSPENDED: "suspended",
}


class VirtualMachineReconciler:
    kind = Kind.VIRTUAL_MACHINE
    rules: Sequence[FieldRule] = RULES
    default = DEFAULT
    sensitive: Sequence[str] = SENSITIVE
    placed = True
    per_host = False

    # --- planning (pure) ------------------------------------------------------------------------------------

    def references(self, key: ResourceKey, spec: Mapping[str, Any]) -> list[Reference]:
        return of_virtual_machine(key, spec)

    def span(
        self,
        key: ResourceKey,
        document: AnyManifest,
        documents: Mapping[ResourceKey, AnyManifest],
        hosts: Sequence[str],
    ) -> tuple[str, ...] | None:
        return None  # placed on one host (``placement``), not spanned

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
        leases = lease_addresses(request, own, problems, deposing)
        disk_datastores = disk_datastores_of(request.documents, spans, placements, problems)
        macs = mac_addresses(request, own, incarnations, deposing, problems)
        return Resolution(leases=leases, macs=macs, disk_datastores=disk_datastores)

    def desired_spec(self, key: ResourceKey, document: AnyManifest, ctx: PlanningContext) -> dict[str, Any]:
        spec = spec_document(document)
        spec["host"] = ctx.placements.get(key)
        incarnation = ctx.incarnations.get(key, 0) if ctx.incarnations else 0
        for index, nic in enumerate(spec["nics"]):
            nic["ip"] = ctx.leases.get((key, index), nic.get("ip"))
            nic["mac"] = ctx.macs.get((key, index)) or mac_address(key, index, incarnation)
        for index, disk in enumerate(spec["disks"]):
            disk["datastore"] = ctx.disk_datastores.get((key, index), disk.get("datastore"))
        return spec

    def detect_drift(self, key: ResourceKey, record: RecordView, live: LiveView) -> Observed:
        applied = record.applied
        if applied is None:
            return Observed(spec=None)  # an interrupted create: it is finished by creating again
        uuid = VMIdentity.recorded(key, record.live).uuid
        host = record.host or applied.get("host")
        if not live.host_answers(host):
            message = f"host {host} is not answering; the VM's state is unknown"
            return Observed(spec=applied, drift=(DriftItem(key, message, None),), unknown=True)
        status = live.vms.get(uuid)
        if status is None:
            return Observed(
                spec=None, drift=(DriftItem(key, "was deleted outside nebctl", "it will be created again"),)
            )
        observed = dict(applied)
        drift: list[DriftItem] = []
        seen_host = live.vm_hosts.get(uuid, host)
        if seen_host != host:
            observed["host"] = seen_host
            drift.append(DriftItem(key, f"was moved to host {seen_host}", f"it will be moved back to {host}"))
        state = STATE_FROM_LIVE.get(status.state)
        if state is not None and state != applied.get("state"):
            observed["state"] = state
            verb = "crashed" if status.state is VMLiveState.CRASHED else f"was {state}"
            drift.append(DriftItem(key, verb, _state_correction(state, str(applied.get("state")))))
        if status.vcpu and status.vcpu != applied.get("vcpu"):
            observed["vcpu"] = status.vcpu
            drift.append(DriftItem(key, f"vcpu was changed to {status.vcpu}", "it will be restored (restart)"))
        if status.memory and status.memory != applied.get("memory"):
            observed["memory"] = status.memory
            was = format_quantity(status.memory)
            drift.append(DriftItem(key, f"memory was changed to {was}", "it will be restored (restart)"))
        return Observed(spec=observed, drift=tuple(drift))

    def still_uses(
        self,
        key: ResourceKey,
        record: RecordView,
        document: AnyManifest | None,
        specs: Mapping[ResourceKey, Mapping[str, Any]],
        removals: Removals,
    ) -> list[str]:
        return vm_still_uses(key, record, document, specs, removals, references=self.references)

    def holds(self, key: ResourceKey, record: RecordView, target: ResourceKey) -> str | None:
        return vm_holds(key, record, target)

    def actions(self, change: ResourceChange, ctx: PlanningContext) -> ActionGroup:
        key = change.key
        document = ctx.documents.get(key)
        desired = ctx.specs.get(key) if document is not None else None
        if desired is None and document is not None:
            desired = self.desired_spec(key, document, ctx)
        record = ctx.records.get(key)
        old = dict(record.applied) if record is not None and record.applied is not None else None
        # What exists is the recorded identity; what is created, the incarnation the planner chose.
        recorded = VMIdentity.recorded(key, record.live if record is not None else {})
        builder = _Builder(key, recorded)
        builder.instance_type = ctx.instance_types.get(key)
        builder.documents = ctx.documents
        builder.records = ctx.records
        new = VMIdentity.of(key, ctx.incarnations.get(key, 0)) if recorded.key == key else recorded
        if change.type is ChangeType.CREATE:
            assert desired is not None
            builder.use(new).create(desired)
        elif change.type is ChangeType.DELETE:
            builder.delete(old or desired or {}, record)
        elif change.type is ChangeType.REPLACE and change.create_first:
            # Only the new VM: the old one is deleted by its deposed record's own change, once this is done.
            assert desired is not None
            builder.use(new).create(desired)
        elif change.type is ChangeType.REPLACE:
            assert desired is not None
            deleted = builder.delete(old or {}, record)
            created = builder.use(new).create(desired, suffix="new")
            builder.edges += [(d, c) for d in deleted.exits for c in created.entries]
        elif change.type is ChangeType.UPDATE:
            assert desired is not None and old is not None
            builder.update(old, desired, change)
            recorded_only = any(field.effect is Effect.NONE for field in change.fields)
            if recorded_only and old != desired and not any(a.operation in DEFINING for a in builder.actions):
                # A field no driver acts on changes (labels, annotations, lifecycle settings) and nothing defines
                # the VM again: its ownership is written after the rest, so that ``nebctl recover`` rebuilds the
                # spec applied now. A correction of drift alone leaves the applied spec, and the ownership, as
                # they were.
                steps = [action.id for action in builder.actions]
                own = builder.add(
                    "own",
                    str(desired["host"]),
                    family=Family.MONITORING,
                    description="write the applied spec (labels, annotations) on the live VM",
                    params={},
                )
                builder.after(steps, [own])
        return ActionGroup(tuple(builder.actions), tuple(builder.edges), tuple(builder.phases))

    def ignored(self, document: AnyManifest) -> tuple[str, ...]:
        if isinstance(document, VirtualMachine):
            return tuple(document.spec.lifecycle.ignoreChanges)
        return ()

    def creates_first(self, document: AnyManifest) -> bool:
        return isinstance(document, VirtualMachine) and document.spec.lifecycle.createBeforeDestroy

    def shared_inputs(self, document: AnyManifest) -> SharedInputs | None:
        return vm_shared_inputs(document) if isinstance(document, VirtualMachine) else None

    def shared_record_inputs(self, record: RecordView) -> SharedInputs | None:
        return vm_record_shared_inputs(record)

    def refusals(self, key: ResourceKey, fields: Sequence[FieldChange], effect: Effect) -> list[str]:
        """Disks only grow; a replaced VM gets new disks, so a smaller one is not a shrink."""
        if effect is Effect.REPLACE:
            return []
        problems = []
        for change in fields:
            if change.path.endswith(".size") and change.path.startswith("disks["):
                before, after = change.before, change.after
                if isinstance(before, int) and isinstance(after, int) and after < before:
                    problems.append(
                        f"{key}: {change.path} cannot shrink from {format_quantity(before)} to"
                        f" {format_quantity(after)} (disks only grow)"
                    )
        return problems

    def depose(
        self, key: ResourceKey, live: Mapping[str, Any], taken: Container[ResourceKey] = frozenset()
    ) -> Deposition:
        return deposition(key, live, taken)

    def finished(self, spec: Mapping[str, Any]) -> Finished:
        state = spec.get("state")
        usage = Usage(
            vcpu=int(spec["vcpu"]), memory=int(spec["memory"]), disk=disk_total(spec), state=str(state or "running")
        )
        return Finished(host=spec.get("host"), status=str(state) if state else None, usage=usage)

    # --- execution --------------------------------------------------------------------------------------------

    def realise(self, action: Action, world: World) -> Mapping[str, Any]:  # noqa: PLR0912 - a branch per operation
        assert action.host is not None
        host = world.host_ref(action.host)
        drivers = world.drivers(action.host)
        params = action.params
        uuid, _ = _identity(action.key, world)
        operation = action.operation
        if operation == "clone":
            volume = VolumeDefinition(
                volume=str(params["volume"]),
                size=params.get("size"),
                backing=params.get("backing"),
                clone=str(params.get("clone", "overlay")),
                # A disk carries its VM's ownership without the spec: the domain carries that, once.
                owner=dataclasses.replace(world.ownership(action.key, _incarnation(action.key, world)), spec=None),
            )
            drivers.storage.clone(host, str(params["datastore"]), volume)
            return {f"disk.{params['disk']}": {"volume": volume.volume, "datastore": params["datastore"]}}
        if operation == "resize":
            drivers.storage.resize(host, str(params["datastore"]), str(params["volume"]), int(params["size"]))
            return {}
        if operation == "delete":
            with contextlib.suppress(NotFoundError):  # already gone: deleting is idempotent
                drivers.storage.delete(host, str(params["datastore"]), str(params["volume"]))
            return {f"disk.{params['disk']}": None}
        if operation in ("pre", "post"):
            nic = _nic(params)
            getattr(drivers.network, operation)(host, uuid, nic)
            if operation == "pre":
                return {f"nic.{params['nic']}": {"ip": nic.ip, "mac": nic.mac, "network": nic.network}}
            return {}
        if operation == "clean":
            with contextlib.suppress(NotFoundError):  # already gone: deleting is idempotent
                drivers.network.clean(host, uuid, _nic(params))
            record = world.record(action.key)
            if record is not None and record.host not in (None, action.host):
                # The source host's NIC, released after a move: the record's NIC is the one on its new host.
                return {}
            return {f"nic.{params['nic']}": None}
        if operation == "deploy":
            definition = _definition(action, world)
            status = drivers.virtualization.deploy(host, definition, start=bool(params["start"]))
            # The cloud instance type it runs as (None off the cloud): the placement history keeps it for showback.
            return {
                "uuid": uuid,
                "host": action.host,
                "state": status.state.value,
                "instanceType": definition.instance_type,
            }
        if operation == "migrate":
            source = world.host_ref(str(params["source"]))
            virtualization = world.drivers(str(params["source"])).virtualization
            definition = _definition(action, world)
            virtualization.migrate(source, host, definition, live=bool(params.get("live", False)))
            return {"host": action.host, "instanceType": definition.instance_type}
        if operation == "shutdown":
            graceful = drivers.virtualization.shutdown(host, uuid, timeout=world.shutdown_timeout)
            # ``forced`` marks a hard stop (the guest ignored ACPI for the whole timeout): the apply's event
            # says so. None removes the mark a previous shutdown left in the record.
            return {"state": "stopped", "forced": True if graceful is False else None}
        if operation == "undeploy":
            with contextlib.suppress(NotFoundError):  # already gone: deleting is idempotent
                drivers.virtualization.undeploy(host, uuid)
            return {"uuid": None, "name": None, "state": None, "instanceType": None}
        if operation == "own":
            owner = world.ownership(action.key, _incarnation(action.key, world))
            write_ownership(world, action.host, "vm", uuid, owner)
            return {}
        if operation in ("suspend", "resume", "cancel", "reboot"):
            getattr(drivers.virtualization, operation)(host, uuid)
            return {"state": {"suspend": "suspended", "cancel": "stopped"}.get(operation, "running")}
        raise PermanentError(f"unknown VM operation {operation!r}")


def _identity(key: ResourceKey, world: World) -> tuple[str, str]:
    """The UUID and live name of the VM the record of ``key`` describes now (see ``VMIdentity.recorded``)."""
    record = world.record(key)
    identity = VMIdentity.recorded(key, record.live if record is not None else {})
    return identity.uuid, identity.name


def _incarnation(key: ResourceKey, world: World) -> int:
    record = world.record(key)
    return VMIdentity.recorded(key, record.live if record is not None else {}).incarnation


def deposition(
    key: ResourceKey, live: Mapping[str, Any], taken: Container[ResourceKey] = frozenset()
) -> tuple[ResourceKey, dict[str, Any], dict[str, Any]]:
    """How a create-before-destroy replacement splits the record of VM ``key`` (whose live part is ``live``):
    the key of the deposed record that keeps the old VM until it is deleted (none of ``taken``, the keys of
    the records there are), that record's live part (the old VM's identity, written out), and the live part
    the record of ``key`` starts again from (the next incarnation). Pure: the planner makes a view of it, and
    the apply's journal writes it before any action."""
    identity = VMIdentity.recorded(key, live)
    deposed = {
        **live,
        "uuid": identity.uuid,
        "name": identity.name,
        "deposed": {"of": key.name, "incarnation": identity.incarnation},
    }
    return deposed_key(key, identity.incarnation, taken), deposed, {"incarnation": identity.incarnation + 1}


def disk_total(spec: Mapping[str, Any]) -> int:
    """Disk a recorded VM spec holds (accounting, other stacks' share of a quota)."""
    return sum(int(disk.get("size") or 0) for disk in spec.get("disks", []))


def _state_correction(live: str, applied: str) -> str:
    verbs = {"running": "started", "stopped": "stopped", "suspended": "suspended"}
    if live == "suspended" and applied == "running":
        return "it will be resumed"
    return f"it will be {verbs.get(applied, applied)} again" if applied == live else f"it will be {verbs[applied]}"


def _nic(params: Mapping[str, Any]) -> NicDefinition:
    return NicDefinition(
        network=str(params["network"]),
        mac=str(params["mac"]),
        ip=params.get("ip"),
        security_groups=tuple(params.get("security_groups", ())),
    )


def _definition(action: Action, world: World) -> VMDefinition:
    params = action.params
    document = world.desired(action.key)
    cloud_init = None
    if isinstance(document, VirtualMachine) and document.spec.cloudInit is not None:
        data = document.spec.cloudInit

        def reveal(value: Any) -> str | None:
            return value.get_secret_value() if value is not None else None

        cloud_init = CloudInitData(reveal(data.userData), reveal(data.metaData), reveal(data.networkConfig))
    uuid, name = _identity(action.key, world)
    return VMDefinition(
        name=name,
        uuid=uuid,
        vcpu=int(params["vcpu"]),
        memory=int(params["memory"]),
        disks=tuple(DiskAttachment(volume=d["volume"], datastore=d["datastore"]) for d in params["disks"]),
        nics=tuple(_nic(nic) for nic in params["nics"]),
        cloud_init=cloud_init,
        owner=world.ownership(action.key, _incarnation(action.key, world)),
        boot=BootDefinition(**params["boot"]) if params.get("boot") else None,
        image=params.get("image"),
        instance_type=params.get("instanceType")
        or _instance_type(action, world, int(params["vcpu"]), int(params["memory"])),
    )


def _instance_type(action: Action, world: World, vcpu: int, memory: int) -> str | None:
    """For a plan that carries no type (made before the host was a cloud host): on a cloud host, the VM's
    ``placement.instanceType``, else the smallest type of the host's capacity map that fits; None elsewhere."""
    host = world.desired(ResourceKey.of(Kind.HOST, str(action.host))) if action.host else None
    if not isinstance(host, Host) or host.spec.cloud is None:
        return None
    document = world.desired(action.key)
    if isinstance(document, VirtualMachine) and document.spec.placement.instanceType:
        return document.spec.placement.instanceType
    kinds = [KNOWN_INSTANCE_TYPES[name] for name in host.spec.cloud.capacity if name in KNOWN_INSTANCE_TYPES]
    kind = smallest_fitting(kinds, vcpu, memory)
    return kind.name if kind is not None else None


class _Group:
    def __init__(self) -> None:
        self.entries: list[str] = []
        self.exits: list[str] = []


class _Builder:
    """Accumulates the actions of one VM change and the order among them."""

    def __init__(self, key: ResourceKey, identity: VMIdentity) -> None:
        self.key = key
        self.identity = identity  # the live VM the next actions are about (``use``)
        self.actions: list[Action] = []
        self.edges: list[tuple[str, str]] = []
        self.phases: list[Phase] = []  # of each action
        # The parameters of each NIC (by the spec's NIC mapping, kept alive with it) and the name of each disk
        # volume: the NIC's pre, post and deploy actions share one mapping, the clone and deploy one name (a
        # 100,000-VM plan holds half a million actions; parameters are read, never changed).
        self._nics: dict[int, tuple[Mapping[str, Any], dict[str, Any]]] = {}
        self._volumes: dict[int, str] = {}
        self.instance_type: str | None = None  # placement's choice on a cloud host
        self.documents: Mapping[ResourceKey, Any] = {}  # the plan's documents: hosts and images, for cloud hosts
        self.records: Mapping[ResourceKey, RecordView] = {}  # the stack's records: a host being destroyed too

    def add(
        self,
        operation: str,
        host: str,
        *parts: object,
        family: Family,
        description: str,
        params: Mapping[str, Any],
        phase: Phase = Phase.BUILD,
    ) -> str:
        identifier = action_id(self.key, *parts, operation)
        self.actions.append(
            Action(identifier, self.key, family, operation, host, params, f"{description} ({self.key} on {host})")
        )
        self.phases.append(phase)
        return identifier

    def use(self, identity: VMIdentity) -> _Builder:
        """Make the next actions about ``identity`` (a replacement deletes one VM and creates another)."""
        if identity != self.identity:
            self.identity = identity
            self._volumes.clear()
            self._nics.clear()
        return self

    def volume(self, index: int) -> str:
        volume = self._volumes.get(index)
        if volume is None:
            volume = self._volumes[index] = self.identity.volume(index)
        return volume

    def nic_params(self, nic: Mapping[str, Any], index: int) -> dict[str, Any]:
        known = self._nics.get(id(nic))
        if known is not None and known[0] is nic and known[1]["nic"] == index:
            return known[1]
        params = _nic_params(self.key, nic, index, self.identity)
        self._nics[id(nic)] = (nic, params)
        return params

    def deploy_params(self, spec: Mapping[str, Any], first: str, value: Any) -> dict[str, Any]:
        """``{first: value}`` then what a deploy (or a migration) defines: vCPUs, memory, disks and NICs."""
        params = {
            first: value,
            "vcpu": spec["vcpu"],
            "memory": spec["memory"],
            "disks": [{"volume": self.volume(i), "datastore": _datastore(d)} for i, d in enumerate(spec["disks"])],
            "nics": [self.nic_params(nic, i) for i, nic in enumerate(spec["nics"])],
            **({"boot": spec["boot"]} if spec.get("boot") else {}),
        }
        if self.instance_type is not None:
            params["instanceType"] = self.instance_type
        uri = self.cloud_uri(str(spec["host"]))
        if uri is not None:
            # On a cloud host the instance boots from the first disk's Image as the cloud has it (its root volume
            # is the VM's disk): no volume of a datastore.
            params["disks"] = []
            image = cloud_image(self.documents, self.key, spec, uri)
            if image is not None:
                params["image"] = image
        return params

    def cloud_uri(self, host: str) -> str | None:
        """The URI of ``host`` when it is a cloud host (it keeps no datastores), else None."""
        key = ResourceKey.of(Kind.HOST, host)
        document = self.documents.get(key)
        if isinstance(document, Host):
            return document.spec.uri if document.spec.cloud is not None else None
        # A host no longer in the manifests (a destroy): as it was applied.
        record = self.records.get(key)
        applied = record.applied if record is not None else None
        return str(applied.get("uri")) if applied and applied.get("cloud") else None

    def after(self, first: Sequence[str], then: Sequence[str]) -> None:
        self.edges += [(a, b) for a in first for b in then]

    # Disk and NIC actions, from a spec that carries the resolved datastore, address and MAC.

    def clone(self, spec: Mapping[str, Any], index: int, suffix: str) -> str:
        disk = spec["disks"][index]
        image = disk.get("image")
        backing = image_volume(ResourceKey.of(Kind.IMAGE, image, self.key.namespace)) if image else None
        return self.add(
            "clone",
            spec["host"],
            *_tag(suffix),
            f"disk{index}",
            family=Family.STORAGE,
            description=f"create disk {index}",
            params={
                "disk": index,
                "volume": self.volume(index),
                "datastore": _datastore(disk),
                "backing": backing,
                "size": disk.get("size"),
                "clone": disk.get("clone", "overlay"),
            },
        )

    def delete_disk(self, spec: Mapping[str, Any], index: int, host: str, phase: Phase) -> str:
        disk = spec["disks"][index]
        return self.add(
            "delete",
            host,
            f"disk{index}",
            family=Family.STORAGE,
            description=f"delete disk {index}",
            params={"disk": index, "volume": self.volume(index), "datastore": _datastore(disk)},
            phase=phase,
        )

    def nic(
        self,
        operation: str,
        spec: Mapping[str, Any],
        index: int,
        host: str,
        suffix: str = "",
        *,
        phase: Phase = Phase.BUILD,
    ) -> str:
        nic = spec["nics"][index]
        return self.add(
            operation,
            host,
            *_tag(suffix),
            f"nic{index}",
            family=Family.NETWORK,
            description={"pre": "prepare", "post": "finish", "clean": "release"}[operation] + f" NIC {index}",
            params=self.nic_params(nic, index),
            phase=phase,
        )

    def deploy(self, spec: Mapping[str, Any], *, start: bool, suffix: str = "") -> str:
        return self.add(
            "deploy",
            spec["host"],
            *_tag(suffix),
            family=Family.VIRTUALIZATION,
            description="deploy and start" if start else "define",
            params=self.deploy_params(spec, "start", start),
        )

    def simple(self, operation: str, host: str, description: str, suffix: str = "", phase: Phase = Phase.BUILD) -> str:
        return self.add(
            operation,
            host,
            *_tag(suffix),
            family=Family.VIRTUALIZATION,
            description=description,
            params={},
            phase=phase,
        )

    # Whole changes.

    def create(self, spec: Mapping[str, Any], suffix: str = "") -> _Group:
        group = _Group()
        host = spec["host"]
        disks = range(len(spec["disks"])) if self.cloud_uri(host) is None else range(0)  # a cloud: the image's
        prepared = [self.clone(spec, i, suffix) for i in disks]
        prepared += [self.nic("pre", spec, i, host, suffix) for i in range(len(spec["nics"]))]
        deploy = self.deploy(spec, start=spec["state"] != "stopped", suffix=suffix)
        self.after(prepared, [deploy])
        # A NIC is finished (filters bound to its tap device) only once the VM runs; a VM defined stopped gets
        # that when it is started.
        running = spec["state"] != "stopped"
        finish = [self.nic("post", spec, i, host, suffix) for i in range(len(spec["nics"]))] if running else []
        if spec["state"] == "suspended":
            finish.append(self.simple("suspend", host, "suspend", suffix))
        self.after([deploy], finish)
        group.entries = prepared or [deploy]
        group.exits = finish or [deploy]
        return group

    def delete(self, spec: Mapping[str, Any], record: RecordView | None) -> _Group:
        group = _Group()
        host = (record.host if record is not None else None) or spec.get("host")
        if not host:
            return group
        destroy = Phase.DESTROY
        undeploy = self.simple("undeploy", host, "stop and undefine", phase=destroy)
        released = [self.nic("clean", spec, i, host, phase=destroy) for i in range(len(spec.get("nics", [])))]
        if self.cloud_uri(host) is None:  # a cloud instance's root volume goes with it
            released += [self.delete_disk(spec, i, host, destroy) for i in range(len(spec.get("disks", [])))]
        self.after([undeploy], released)
        group.entries = [undeploy]
        group.exits = released or [undeploy]
        return group

    def update(self, old: Mapping[str, Any], new: Mapping[str, Any], change: ResourceChange) -> None:
        host = new["host"]
        restart = any(c.effect is Effect.RESTART for c in change.fields)
        observed_state = _field_before(change.fields, "state", str(old.get("state")))
        moving = change.previous_host is not None and change.previous_host != host
        if moving:
            source = change.previous_host or host
            # A running VM moves live (the driver falls back to a cold move where the hypervisor cannot).
            live = observed_state == "running"
            # Its NICs are prepared on the target first (the address reserved in the target's network, the
            # filters defined there) and released on the source once it has left, as for a new VM and a deleted one.
            prepared = [self.nic("pre", new, i, host, "move") for i in range(len(new["nics"]))]
            migrate = self.add(
                "migrate",
                host,
                family=Family.VIRTUALIZATION,
                description=f"migrate from {source}" + (" (live)" if live else ""),
                params={**self.deploy_params(new, "source", source), "live": live},
            )
            self.after(prepared, [migrate])
            released = [
                self.nic("clean", old, i, source, "move", phase=Phase.RELEASE) for i in range(len(old.get("nics", [])))
            ]
            self.after([migrate], released)
            if not restart and observed_state == new["state"]:
                return
            previous = [migrate]
        else:
            previous = []
        if not restart:
            self._change_state(observed_state, new, host, previous)
            return
        steps = previous
        if observed_state != "stopped":
            # What an update stops using (the running VM, a NIC, a disk) is released before what it used goes.
            shutdown = self.simple("shutdown", host, "shut down gracefully", phase=Phase.RELEASE)
            self.after(steps, [shutdown])
            steps = [shutdown]
        first = len(self.actions)
        middle = self._disk_and_nic_changes(old, new, host)
        # Every disk and NIC step waits for the shutdown, including the NIC cleans that ``middle`` (the steps
        # the deploy waits for) leaves out: releasing the NIC of a VM that still runs would cut it off.
        created = [action.id for action in self.actions[first:]]
        waiting = {after for _, after in self.edges}
        self.after(steps, [identifier for identifier in created if identifier not in waiting])
        deploy = self.deploy(new, start=new["state"] != "stopped")
        self.after(middle or steps, [deploy])
        running = new["state"] != "stopped"
        finish = [self.nic("post", new, i, host) for i in range(len(new["nics"]))] if running else []
        if new["state"] == "suspended":
            finish.append(self.simple("suspend", host, "suspend"))
        self.after([deploy], finish)

    def _change_state(self, current: str, new: Mapping[str, Any], host: str, previous: list[str]) -> None:
        wanted = new["state"]
        if current == wanted:
            return
        if wanted == "running" and current == "suspended":
            steps = [self.simple("resume", host, "resume")]
        elif wanted == "running":  # from stopped: start, then finish the NICs
            start = self.deploy(new, start=True)
            self.after([start], [self.nic("post", new, i, host) for i in range(len(new["nics"]))])
            steps = [start]
        elif wanted == "stopped":
            steps = [self.simple("shutdown", host, "shut down gracefully", phase=Phase.RELEASE)]
        elif current == "stopped":  # stopped -> suspended: start, then pause
            start = self.deploy(new, start=True)
            posts = [self.nic("post", new, i, host) for i in range(len(new["nics"]))]
            suspend = self.simple("suspend", host, "suspend")
            self.after([start], [*posts, suspend])
            steps = [start]
        else:
            steps = [self.simple("suspend", host, "suspend")]
        self.after(previous, steps)

    def _disk_and_nic_changes(self, old: Mapping[str, Any], new: Mapping[str, Any], host: str) -> list[str]:
        steps: list[str] = []
        old_disks, new_disks = old.get("disks", []), new["disks"]
        if self.cloud_uri(host) is not None:  # a cloud instance has no datastore volumes to change
            old_disks, new_disks = [], []
        for index, disk in enumerate(new_disks):
            if index >= len(old_disks):
                steps.append(self.clone(new, index, ""))
            elif (disk.get("size") or 0) > (old_disks[index].get("size") or 0):
                steps.append(
                    self.add(
                        "resize",
                        host,
                        f"disk{index}",
                        family=Family.STORAGE,
                        description=f"grow disk {index}",
                        params={
                            "disk": index,
                            "volume": self.volume(index),
                            "datastore": _datastore(disk),
                            "size": disk["size"],
                        },
                    )
                )
        steps += [self.delete_disk(old, i, host, Phase.RELEASE) for i in range(len(new_disks), len(old_disks))]
        old_nics, new_nics = old.get("nics", []), new["nics"]
        for index in range(max(len(old_nics), len(new_nics))):
            before = old_nics[index] if index < len(old_nics) else None
            after = new_nics[index] if index < len(new_nics) else None
            if before == after:
                continue
            if before is not None:
                clean = self.nic("clean", old, index, host, "old" if after is not None else "", phase=Phase.RELEASE)
                steps.append(clean)
            if after is not None:
                pre = self.nic("pre", new, index, host)
                if before is not None:
                    self.after([clean], [pre])
                    steps.remove(clean)
                steps.append(pre)
        return steps


def cloud_image(
    documents: Mapping[ResourceKey, Any], key: ResourceKey, spec: Mapping[str, Any], uri: str
) -> str | None:
    """The image a VM on the cloud host at ``uri`` boots from: its first disk's Image's source for that cloud
    (on EC2, the AMI of the host's region); None when it has none (the driver's configured default then)."""
    disks = spec.get("disks") or []
    name = disks[0].get("image") if disks else None
    image = documents.get(ResourceKey.of(Kind.IMAGE, str(name), key.namespace)) if name else None
    if not isinstance(image, Image) or image.spec.cloud is None:
        return None
    parts = urlsplit(uri)
    if parts.scheme == "ec2" and image.spec.cloud.ec2 is not None:
        return image.spec.cloud.ec2.ami_for(parts.hostname)
    return None


def _tag(suffix: str) -> tuple[str, ...]:
    return (suffix,) if suffix else ()


def _datastore(disk: Mapping[str, Any]) -> str:
    return live_name(ResourceKey.of(Kind.DATASTORE, str(disk["datastore"])))


def _nic_params(key: ResourceKey, nic: Mapping[str, Any], index: int, identity: VMIdentity) -> dict[str, Any]:
    network = ResourceKey.of(Kind.NETWORK, str(nic["network"]), key.namespace)
    groups = [ResourceKey.of(Kind.SECURITY_GROUP, str(g), key.namespace) for g in nic.get("securityGroups", [])]
    return {
        "nic": index,
        "network": live_name(network),
        "mac": nic.get("mac") or identity.mac(index),
        "ip": nic.get("ip"),
        "security_groups": [security_group_filter(group) for group in groups],
    }


def _field_before(changes: Sequence[FieldChange], path: str, default: str) -> str:
    for change in changes:
        if change.path == path and change.before is not None:
            return str(change.before)
    return default


RECONCILER = VirtualMachineReconciler()
