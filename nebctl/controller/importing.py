"""Adopting a live object into a stack (``nebctl import KIND/NAME --id ID``).

Adoption writes a record that says "this live VM is vm/NAME of stack S": its own UUID and name are kept (not
the deterministic ones nebctl would give a VM it creates), and what was observed becomes its last applied spec.
From then on, ``diff`` compares the manifest with that, and the next ``apply`` brings it in line, writing the
ownership on the live object. A network, datastore (pool) or image (volume) is adopted too, when its live name
is the one nebctl gives that resource (a VM's NIC names its network's live name, so a differently named object
would have to be renamed): ``find_object`` lists each host's objects (one inventory call per host), and the
manifest, which is required, says what it is (``adopted_object``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nebctl.controller.observing import DriverSource
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database.records import ResourceRecord
from nebctl.drivers.context import CallContext, ProgramWatch, calling
from nebctl.drivers.errors import DriverError
from nebctl.drivers.types import HostRef, OwnedObject, VMStatus
from nebctl.reconcilers.identity import image_volume, live_name, mac_address
from nebctl.reconcilers.vm import STATE_FROM_LIVE
from nebctl.schemas.digests import with_metadata
from nebctl.schemas.models import AnyManifest, VirtualMachine, spec_document


class AdoptionError(Exception):
    """The object cannot be adopted; the message says why."""


def find_vm(
    identifier: str,
    hosts: Mapping[str, tuple[HostRef, Any]],
    registry: DriverSource,
    *,
    host: str | None = None,
    programs: ProgramWatch | None = None,
) -> tuple[str, VMStatus]:
    """The host and status of the live VM whose UUID or name is ``identifier`` (one bulk probe per host).
    ``programs`` records the programs an exec driver's probe runs (``observing.observe`` says why)."""
    names = [host] if host else sorted(hosts)
    for name in names:
        if name not in hosts:
            raise AdoptionError(f"host {name!r} is neither in the manifests nor recorded")
        ref, overrides = hosts[name]
        try:
            with calling(CallContext(programs=programs)):
                statuses = registry.for_host(ref, overrides).monitoring.probe_vms(ref)
        except DriverError as error:
            raise AdoptionError(f"host {name} did not answer: {error}") from error
        for status in statuses:
            if identifier in (status.uuid, status.name):
                return name, status
    where = f"host {host}" if host else f"any of {len(names)} host(s)"
    raise AdoptionError(f"no VM with id or name {identifier!r} on {where}")


def adopted_nics(key: ResourceKey, nics: list[dict[str, Any]], macs: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """The manifest's NICs as the live VM has them: each keeps the MAC it has (matched by position), so the
    plan keeps it too; a NIC the VM lacks is left out, so the next plan adds it (with a MAC of its own). A
    driver that cannot tell the MACs (``macs`` None) leaves every NIC, with the MAC nebctl would derive."""
    if macs is None:
        return [{**nic, "mac": mac_address(key, index)} for index, nic in enumerate(nics)]
    return [{**nic, "mac": mac} for nic, mac in zip(nics, macs, strict=False)]


def adopted_record(
    key: ResourceKey,
    *,
    stack: str,
    host: str,
    status: VMStatus,
    document: AnyManifest | None,
    existing: ResourceRecord | None,
) -> ResourceRecord:
    """The record that makes ``status`` the live object of ``key`` in ``stack``."""
    if key.kind is not Kind.VIRTUAL_MACHINE:
        raise AdoptionError(f"only VMs can be imported, not {key.kind.value}")
    if existing is not None:
        raise AdoptionError(f"{key} is already managed (stack {existing.stack}); nothing to import")
    if status.owner is not None and status.owner.stack != stack:
        raise AdoptionError(
            f"the VM belongs to stack {status.owner.stack!r}; nebctl never takes another stack's objects"
        )
    if isinstance(document, VirtualMachine):
        # The manifest says what the VM is: take it as applied, with what monitoring measured laid over it.
        applied = spec_document(document)
        applied["nics"] = adopted_nics(key, applied["nics"], status.macs)
    else:
        applied = {"disks": [], "nics": [], "dependsOn": [], "cloudInit": None}
    applied["host"] = host
    applied["vcpu"] = status.vcpu or applied.get("vcpu", 1)
    applied["memory"] = status.memory or applied.get("memory")
    applied["state"] = STATE_FROM_LIVE.get(status.state, "running")
    return ResourceRecord(
        kind=key.kind,
        namespace=key.namespace,
        name=key.name,
        stack=stack,
        applied=applied,
        status="imported",
        live={"uuid": status.uuid, "name": status.name, "host": host, "state": applied["state"]},
        host=host,
    )


# The live object that is each adoptable kind's, and the live name nebctl gives it.
ADOPTABLE: dict[Kind, tuple[str, Any]] = {
    Kind.NETWORK: ("network", live_name),
    Kind.DATASTORE: ("pool", live_name),
    Kind.IMAGE: ("volume", image_volume),
}


def find_object(
    key: ResourceKey,
    identifier: str,
    hosts: Mapping[str, tuple[HostRef, Any]],
    registry: DriverSource,
    *,
    host: str | None = None,
) -> dict[str, OwnedObject]:
    """The live object of ``key`` (named ``identifier``) on each host that has it, by host."""
    if key.kind not in ADOPTABLE:
        raise AdoptionError(f"{key.kind.value} cannot be imported: only VMs, networks, datastores and images")
    what, naming = ADOPTABLE[key.kind]
    expected = naming(key)
    if identifier != expected:
        raise AdoptionError(
            f"{key} is the {what} named {expected!r} on every host (its dependants name it so); "
            f"{identifier!r} would have to be renamed: rename it to {expected!r}, or name the resource after it"
        )
    names = [host] if host else sorted(hosts)
    found: dict[str, OwnedObject] = {}
    for name in names:
        if name not in hosts:
            raise AdoptionError(f"host {name!r} is neither in the manifests nor recorded")
        ref, overrides = hosts[name]
        monitoring = registry.for_host(ref, overrides).monitoring
        lister = getattr(monitoring, "inventory", None)
        if lister is None:
            raise AdoptionError(f"host {name}: its monitoring driver cannot list {what}s")
        try:
            listed = lister(ref)
        except DriverError as error:
            raise AdoptionError(f"host {name} did not answer: {error}") from error
        for item in listed:
            if item.object == what and item.name == identifier:
                found[name] = item
    if not found:
        where = f"host {host}" if host else f"any of {len(names)} host(s)"
        raise AdoptionError(f"no {what} named {identifier!r} on {where}")
    return found


def adopted_object(
    key: ResourceKey,
    *,
    stack: str,
    found: Mapping[str, OwnedObject],
    document: AnyManifest | None,
    existing: ResourceRecord | None,
) -> ResourceRecord:
    """The record that makes the objects ``found`` (by host) the live objects of network, datastore or image
    ``key`` in ``stack``: the manifest's spec as applied, on the hosts it was found on."""
    if existing is not None:
        raise AdoptionError(f"{key} is already managed (stack {existing.stack}); nothing to import")
    if document is None:
        raise AdoptionError(f"give the manifests with -f: they say what {key} is (its spec is not read from it)")
    for name, item in sorted(found.items()):
        if item.owner is not None and item.owner.stack != stack:
            raise AdoptionError(
                f"the {item.object} on {name} belongs to stack {item.owner.stack!r}; nebctl never takes another "
                "stack's objects"
            )
    applied = with_metadata(spec_document(document), document)
    applied["hosts"] = sorted(found)
    live: dict[str, Any] = {}
    for name, item in sorted(found.items()):
        if key.kind is Kind.NETWORK:
            live[f"bridge.{name}"] = item.details.get("bridge")
        elif key.kind is Kind.DATASTORE and item.details.get("capacity") is not None:
            live[f"capacity.{name}"] = item.details["capacity"]
        elif key.kind is Kind.IMAGE:
            live.update({k: v for k, v in (("format", item.details.get("format")),
                                             ("size", item.details.get("capacity")),
                                             ("sha256", item.details.get("sha256"))) if v is not None})  # fmt: skip
    return ResourceRecord(
        kind=key.kind,
        namespace=key.namespace,
        name=key.name,
        stack=stack,
        applied=applied,
        status="imported",
        live=live,
    )
