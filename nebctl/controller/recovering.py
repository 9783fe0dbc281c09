"""Rebuilding records from the ownership written on live objects (``nebctl recover``), and the guard that keeps
a database missing those records from creating second copies (``unrecorded``).

``survey`` is the I/O edge: one host probe, one bulk VM probe and one inventory call per host (the monitoring
driver's ``inventory``, when it has one). ``rebuild`` is pure: from what the survey found, this installation's
id and the records that exist, it returns the records to write and what it could not rebuild, each with the
reason, never a guess. The CLI writes the records in one transaction, so a recover killed at any moment has
written all of them or none, and running it again gives the same result.

The ownership format is ``drivers.ownership`` (docs/ownership.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nebctl.controller.observing import DriverSource
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database.records import ResourceRecord
from nebctl.database.state import spec_digest
from nebctl.drivers.errors import CapabilityError, DriverError
from nebctl.drivers.states import HostLiveState
from nebctl.drivers.types import HostProbe, HostRef, OwnedObject, Ownership, VMStatus
from nebctl.reconcilers.identity import VMIdentity, deposed_key, live_name
from nebctl.reconcilers.vm import STATE_FROM_LIVE
from nebctl.schemas.digests import with_metadata
from nebctl.schemas.models import AnyManifest, spec_document

log = logging.getLogger(__name__)

# The live object that carries each spanned kind's ownership (``OwnedObject.object``).
SPANNED_OBJECTS: Mapping[Kind, str] = {
    Kind.NETWORK: "network",
    Kind.DATASTORE: "pool",
    Kind.IMAGE: "volume",
    Kind.SECURITY_GROUP: "filter",
}
# Kinds with no live object of their own: their record is the manifest's spec, for a host once it answers.
REGISTERED = (Kind.HOST, Kind.HOOK, Kind.MARKETPLACE)


@dataclass(frozen=True)
class LiveObject:
    """One owned live object found on ``host``: a VM (``vm``) or another object (``item``)."""

    host: str
    owner: Ownership
    vm: VMStatus | None = None
    item: OwnedObject | None = None

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(Kind(self.owner.kind), self.owner.namespace, self.owner.name)

    def describe(self) -> str:
        if self.vm is not None:
            return f"domain {self.vm.name} ({self.vm.uuid}) on {self.host}"
        assert self.item is not None
        return f"{self.item.object} {self.item.name} on {self.host}"


@dataclass(frozen=True)
class Survey:
    """What the hosts hold: every probe, every owned object, and the hosts that could not be listed whole."""

    probes: Mapping[str, HostProbe] = field(default_factory=dict)
    objects: Sequence[LiveObject] = ()
    unlisted: Mapping[str, str] = field(default_factory=dict)  # host -> why only its VMs were seen (or none)


def survey(hosts: Mapping[str, tuple[HostRef, Any]], registry: DriverSource, *, parallelism: int = 16) -> Survey:
    """Probe each host once and list what it holds; a host that fails is in ``unlisted`` with the reason."""

    def one(name: str) -> tuple[HostProbe, list[LiveObject], str | None]:
        ref, overrides = hosts[name]
        try:
            monitoring = registry.for_host(ref, overrides).monitoring
            probe = monitoring.probe_host(ref)
            if probe.state is HostLiveState.ERROR:
                return probe, [], f"host {name} does not answer: {probe.error or 'no reason given'}"
            found = [LiveObject(name, s.owner, vm=s) for s in monitoring.probe_vms(ref) if s.owner is not None]
            # ``InventoryDriver`` says what it is; an attribute lookup says it as well as isinstance on a protocol,
            # at a thousandth of the cost (a thousand hosts).
            inventory = getattr(monitoring, "inventory", None)
            if inventory is None:
                return probe, found, f"host {name}: its monitoring driver lists only VMs (no inventory)"
            try:
                listed: Sequence[OwnedObject] = inventory(ref)
            except CapabilityError as error:
                return probe, found, f"host {name}: its monitoring driver lists only VMs ({error})"
            found += [LiveObject(name, item.owner, item=item) for item in listed if item.owner is not None]
            return probe, found, None
        except (DriverError, OSError, ValueError) as error:
            log.warning("host %s could not be surveyed: %s", name, error)
            return HostProbe(name=name, state=HostLiveState.ERROR, error=str(error)), [], f"host {name}: {error}"

    names = sorted(hosts)
    if len(names) <= 1 or parallelism <= 1:
        results = [one(name) for name in names]
    else:
        with ThreadPoolExecutor(max_workers=min(parallelism, len(names)), thread_name_prefix="survey") as pool:
            results = list(pool.map(one, names))
    probes: dict[str, HostProbe] = {}
    objects: list[LiveObject] = []
    unlisted: dict[str, str] = {}
    for name, (probe, found, problem) in zip(names, results, strict=True):
        probes[name] = probe
        objects += found
        if problem is not None:
            unlisted[name] = problem
    return Survey(probes, objects, unlisted)


@dataclass(frozen=True)
class Recovery:
    """What ``rebuild`` found: the records to write, what it cannot rebuild (with why), the objects that belong
    to another installation (never taken), and notes on what it did rebuild from more than the objects."""

    records: Sequence[ResourceRecord] = ()
    problems: Sequence[str] = ()
    foreign: Sequence[str] = ()
    notes: Sequence[str] = ()


def rebuild(
    found: Survey,
    *,
    installation: str,
    records: Mapping[ResourceKey, ResourceRecord],
    stacks: Collection[str] | None = None,
    documents: Mapping[ResourceKey, AnyManifest] | None = None,
    stack: str | None = None,
) -> Recovery:
    """The records the live objects of ``found`` describe, for the keys that have none in ``records``: the
    objects of this ``installation``, of ``stacks`` (every stack when None). ``documents`` (with the ``stack``
    they are applied as) adds the records of hosts, hooks and marketplaces, which have no live object."""
    problems: list[str] = []
    foreign: list[str] = []
    notes: list[str] = []
    by_key: dict[ResourceKey, list[LiveObject]] = defaultdict(list)
    for item in found.objects:
        owner = item.owner
        if stacks is not None and owner.stack not in stacks:
            continue
        if owner.installation != installation:
            whose = f"installation {owner.installation}" if owner.installation else "an older nebctl (no installation)"
            foreign.append(f"{owner.kind}/{owner.name} (stack {owner.stack}): {item.describe()} belongs to {whose}")
            continue
        by_key[item.key].append(item)
    rebuilt: list[ResourceRecord] = []
    for key in sorted(by_key, key=lambda k: (k.kind.value, k.namespace, k.name)):
        items = by_key[key]
        if key in records:
            continue  # recorded already: the record wins, recovery never overwrites one
        if key.kind is Kind.VIRTUAL_MACHINE:
            rebuilt += _vm_records(key, [i for i in items if i.vm is not None], records, problems)
        elif key.kind in SPANNED_OBJECTS:
            record = _spanned_record(key, [i for i in items if i.item and i.item.object == SPANNED_OBJECTS[key.kind]])
            if isinstance(record, str):
                problems.append(record)
            elif record is not None:
                rebuilt.append(record)
    # Hosts and hooks are rebuilt only beside a stack that had live objects here: an installation that finds
    # none of its own has nothing to recover, and registers nothing.
    if documents is not None and stack is not None and any(r.stack == stack for r in rebuilt):
        rebuilt += _registered_records(
            found, documents=documents, records=records, stack=stack, problems=problems, notes=notes
        )
    if documents is not None:
        rebuilt = [_with_desired(r, documents.get(r.key)) for r in rebuilt]
    for _host, why in sorted(found.unlisted.items()):
        problems.append(f"{why}; what it holds besides VMs is not rebuilt")
    return Recovery(rebuilt, problems, sorted(foreign), notes)


def _registered_records(
    found: Survey,
    *,
    documents: Mapping[ResourceKey, AnyManifest],
    records: Mapping[ResourceKey, ResourceRecord],
    stack: str,
    problems: list[str],
    notes: list[str],
) -> list[ResourceRecord]:
    """Records of the manifests' hosts (those that answer), hooks and marketplaces: they have no live object."""
    rebuilt: list[ResourceRecord] = []
    for key, document in sorted(documents.items(), key=lambda pair: (pair[0].kind.value, pair[0].name)):
        if key.kind not in REGISTERED or key in records:
            continue
        live: dict[str, Any] = {}
        if key.kind is Kind.HOST:
            probe = found.probes.get(key.name)
            if probe is None or probe.state is HostLiveState.ERROR:
                problems.append(f"{key}: the host did not answer; its record is not rebuilt")
                continue
            live = {"cpus": probe.cpus, "memory": probe.memory}
        spec = with_metadata(spec_document(document), document)
        rebuilt.append(_record(key, stack, spec, live, status="ready", desired=spec_document(document)))
        notes.append(f"{key}: rebuilt from the manifests (it has no live object of its own)")
    return rebuilt


def _with_desired(record: ResourceRecord, document: AnyManifest | None) -> ResourceRecord:
    if document is None or record.desired is not None:
        return record
    desired = spec_document(document)
    return dataclasses.replace(record, desired=desired, desired_hash=_hash(desired))


def _vm_records(
    key: ResourceKey, items: Sequence[LiveObject], records: Mapping[ResourceKey, ResourceRecord], problems: list[str]
) -> list[ResourceRecord]:
    """The record of VM ``key`` (its highest incarnation) and a deposed record for each older one still there."""
    by_incarnation: dict[int, list[LiveObject]] = defaultdict(list)
    for item in items:
        by_incarnation[item.owner.incarnation].append(item)
    result: list[ResourceRecord] = []
    newest = max(by_incarnation, default=None)
    for incarnation, copies in sorted(by_incarnation.items()):
        if len(copies) > 1:
            where = ", ".join(item.describe() for item in copies)
            problems.append(f"{key}: incarnation {incarnation} runs more than once ({where}); not rebuilt")
            continue
        item = copies[0]
        spec = item.owner.spec
        if spec is None:
            problems.append(f"{key}: {item.describe()} carries no applied spec (an older nebctl made it); not rebuilt")
            continue
        assert item.vm is not None
        applied = dict(spec)
        state = STATE_FROM_LIVE.get(item.vm.state)
        if state is not None:
            applied["state"] = state  # what runs now; the manifests say whether it should
        identity = VMIdentity.of(key, incarnation)
        live = _vm_live(applied, identity, item)
        if item.vm.name != identity.name:
            live["name"] = item.vm.name  # an adopted VM keeps its own name
        record_key = key
        if incarnation != newest:
            record_key = deposed_key(key, incarnation, records)
            live.update(uuid=item.vm.uuid, name=item.vm.name, deposed={"of": key.name, "incarnation": incarnation})
        elif incarnation:
            live["incarnation"] = incarnation
        host = str(applied.get("host") or item.host)
        result.append(_record(record_key, item.owner.stack, applied, live, status=str(applied["state"]), host=host))
    return result


def _vm_live(applied: Mapping[str, Any], identity: VMIdentity, item: LiveObject) -> dict[str, Any]:
    """A VM record's live part as an apply leaves it: its UUID, host and state, each disk's volume and pool,
    each NIC's address, MAC and network (the spec holds what the plan resolved)."""
    assert item.vm is not None
    live: dict[str, Any] = {"uuid": item.vm.uuid, "host": item.host, "state": applied.get("state")}
    for index, disk in enumerate(applied.get("disks") or []):
        datastore = live_name(ResourceKey.of(Kind.DATASTORE, str(disk.get("datastore")), identity.key.namespace))
        live[f"disk.{index}"] = {"volume": identity.volume(index), "datastore": datastore}
    for index, nic in enumerate(applied.get("nics") or []):
        network = live_name(ResourceKey.of(Kind.NETWORK, str(nic.get("network")), identity.key.namespace))
        live[f"nic.{index}"] = {"ip": nic.get("ip"), "mac": nic.get("mac"), "network": network}
    return live


def _spanned_record(key: ResourceKey, items: Sequence[LiveObject]) -> ResourceRecord | str | None:
    """The record of a resource living on several hosts, from its objects there; a sentence when it cannot."""
    if not items:
        return None
    specs = [item.owner.spec for item in items]
    if any(spec is None for spec in specs):
        return f"{key}: an object carries no applied spec (an older nebctl made it); not rebuilt"
    first = specs[0]
    assert first is not None
    # The span may differ: a host added to it later got the objects of a spec listing it, and the hosts it had
    # kept theirs (an apply writes nothing on them). The record's span is where the objects are found.
    if any(spec is not first and spec != first and _spanless(spec) != _spanless(first) for spec in specs[1:]):
        hosts = ", ".join(sorted(item.host for item in items))
        return f"{key}: its objects on {hosts} carry different applied specs (an apply stopped half-way); not rebuilt"
    applied = dict(first)
    applied["hosts"] = sorted(
        {item.host for item in items}
    )  # where it is: a host it should also be on is a change the next diff shows
    live: dict[str, Any] = {}
    for item in items:
        assert item.item is not None
        details = item.item.details
        if key.kind is Kind.NETWORK:
            live[f"bridge.{item.host}"] = details.get("bridge")
        elif key.kind is Kind.DATASTORE:
            live[f"capacity.{item.host}"] = details.get("capacity")
        elif key.kind is Kind.IMAGE:
            live.update({"format": details.get("format"), "size": details.get("capacity")})
            if details.get("sha256"):
                live["sha256"] = details["sha256"]
    return _record(key, items[0].owner.stack, applied, live, status="ready")


def _spanless(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    return {name: value for name, value in (spec or {}).items() if name != "hosts"}


def _record(
    key: ResourceKey,
    stack: str,
    applied: dict[str, Any],
    live: dict[str, Any],
    *,
    status: str,
    host: str | None = None,
    desired: dict[str, Any] | None = None,
) -> ResourceRecord:
    return ResourceRecord(
        kind=key.kind,
        namespace=key.namespace,
        name=key.name,
        stack=stack,
        desired=desired,
        desired_hash=_hash(desired),
        applied=applied,
        applied_hash=_hash(applied),
        generation=1,
        status=status,
        live=live,
        host=host,
    )


def _hash(spec: Mapping[str, Any] | None) -> str | None:
    return spec_digest(spec)  # the digest an apply records (``applying.values.spec_hash``: the same canonical JSON)


def unrecorded(
    objects: Iterable[LiveObject],
    *,
    stack: str,
    installation: str,
    keys: Collection[ResourceKey],
    in_flight: Collection[ResourceKey] = frozenset(),
) -> tuple[list[str], bool]:
    """The live objects that a plan creating ``keys`` (resources without a record) would create over, each
    as a sentence, and whether any of them is this stack's own (``nebctl recover`` can rebuild its record).
    ``in_flight`` are the resources of an apply of this stack that never finished: their objects may have been
    made just before its process died, and the next apply finishes them."""
    found: list[str] = []
    ours = False
    for item in objects:
        key = item.key
        if key not in keys or (key in in_flight and item.owner.installation == installation):
            continue
        owner = item.owner
        if owner.installation != installation:
            whose = f"installation {owner.installation}" if owner.installation else "an older nebctl"
            found.append(f"{key}: {item.describe()} belongs to {whose} (stack {owner.stack}), not this one")
        elif owner.stack != stack:
            found.append(f"{key}: {item.describe()} belongs to stack {owner.stack!r}")
        else:
            ours = True
            found.append(f"{key}: {item.describe()} is this stack's, but the database has no record of it")
    return sorted(found), ours
