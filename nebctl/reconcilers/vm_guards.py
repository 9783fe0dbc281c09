"""What a VM that stays still uses of what a plan takes away: the images backing its disks, the networks of its
NICs, its host, and what it uses on that host. Each is a problem the plan reports instead of leaving the VM
without it. Pure; reached through the VM reconciler's ``still_uses`` (the planner asks every kind's reconciler
about each of its records that stays) and ``holds`` (which live objects on its host it keeps from being deleted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nebctl.core.keys import Kind, ResourceKey, sort_key
from nebctl.reconcilers.base import RecordView, Removals
from nebctl.schemas.models import AnyManifest, VirtualMachine
from nebctl.schemas.references import Reference

References = Callable[[ResourceKey, Mapping[str, Any]], Iterable[Reference]]


def vm_still_uses(
    key: ResourceKey,
    record: RecordView,
    document: AnyManifest | None,
    specs: Mapping[ResourceKey, Mapping[str, Any]],
    removals: Removals,
    *,
    references: References,
) -> list[str]:
    """The problems of the staying VM ``key`` (its record ``record``, its manifest ``document``) with what
    ``removals`` takes away; ``specs`` are the plan's resolved specs, ``references`` the VM's references."""
    assert record.applied is not None
    problems: list[str] = []
    going, deleted, updated = removals.going, removals.deleted, removals.updated
    leaving, touched_paths = removals.leaving, removals.touched_paths
    kept = len(record.applied.get("disks", []))
    if key in updated and isinstance(document, VirtualMachine):
        kept = min(kept, len(document.spec.disks))
    for disk in record.applied.get("disks", [])[:kept]:
        image = disk.get("image")
        image_key = ResourceKey.of(Kind.IMAGE, image, key.namespace) if image else None
        if image_key in going and disk.get("clone", "overlay") == "overlay":
            problems.append(
                f"{image_key}: cannot be replaced or deleted while {key} uses it as a backing file"
                " (replace or delete the VM too)"
            )
    # A NIC on a network that goes away must be prepared again (its address moves with a new address plan)
    # or removed by this plan; otherwise the VM would stay attached to a network deleted under it.
    touched = touched_paths.get(key, ())
    for index, nic in enumerate(record.applied.get("nics", [])):
        network_key = ResourceKey.of(Kind.NETWORK, str(nic.get("network")), key.namespace)
        if network_key in going and not any(path.startswith(f"nics[{index}]") for path in touched):
            problems.append(
                f"{network_key}: cannot be replaced or deleted while {key} is attached to it"
                f" (nics[{index}]; replace the VM or remove the NIC too)"
            )
    # A datastore, image, network or group that leaves the VM's host (its span shrinks) while the VM stays
    # there, or only migrates in this plan (a migration is not ordered before the removal), and still uses it.
    gone_here = leaving.get(str(record.host))
    still_used = (
        _targets(references, key, specs.get(key, record.applied) if key in updated else record.applied)
        if gone_here
        else ()
    )
    for used in sorted(set(still_used) & (gone_here or set()), key=sort_key):
        problems.append(
            f"{used}: cannot leave host {record.host} while {key} uses it there (move or delete the VM first)"
        )
    host_key = ResourceKey.of(Kind.HOST, str(record.host)) if record.host else None
    if host_key in deleted:
        problems.append(f"{host_key}: cannot be removed while {key} runs on it")
    return problems


def _targets(references: References, key: ResourceKey, spec: Mapping[str, Any] | None) -> set[ResourceKey]:
    """The resources ``spec`` names (none for no spec), as the planner's ``references`` reads them."""
    if not spec:
        return set()
    return {reference.target for reference in references(key, spec)}


def vm_holds(key: ResourceKey, record: RecordView, target: ResourceKey) -> str | None:
    """How the VM ``key`` (its ``record`` applied) holds the live object of ``target`` on its host: an image
    its overlay disk is backed by (deleting the volume would pull the file from under the disk), a network its
    NIC is attached to (libvirt refuses to delete a network whose DHCP entries its NICs hold; so does the sim).
    A full clone copies its image, and a security group is always repaired in place: neither is held."""
    applied = record.applied or {}
    if target.kind is Kind.IMAGE:
        for index, disk in enumerate(applied.get("disks", [])):
            image = disk.get("image")
            overlay = disk.get("clone", "overlay") == "overlay"
            if image and overlay and ResourceKey.of(Kind.IMAGE, image, key.namespace) == target:
                return f"uses it as the backing file of disks[{index}]"
    if target.kind is Kind.NETWORK:
        for index, nic in enumerate(applied.get("nics", [])):
            if ResourceKey.of(Kind.NETWORK, str(nic.get("network")), key.namespace) == target:
                return f"is attached to it (nics[{index}])"
    return None
