"""Which resources a spec names: the one reading of references, for validation and for the planner.

A spec is plain data: a manifest's spec as validation sees it (``model_dump``), or a spec the planner resolved
or recorded (with the VM's chosen ``host`` and a multi-host resource's ``hosts`` span filled in). Each
reconciler answers ``references`` with these functions (``reconcilers.base.Reconciler``), so the order a plan
follows and the references validation checks cannot disagree; ``schemas.validation`` reads them here because
it sits below the reconcilers.

Paths are relative to the spec (``("disks", 0, "image")``). Scoping: namespaced kinds (Image, Network,
SecurityGroup, VirtualMachine, Hook) name namespaced kinds of their own namespace; cluster-scoped kinds (Host,
Datastore, Marketplace) are named from anywhere (``ResourceKey.of`` folds their namespace).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from nebctl.core.keys import Kind, ResourceKey

SpecPath = tuple[str | int, ...]


class Reference(NamedTuple):
    """One resource naming another: where (a path in the spec) and what (the target's key)."""

    path: SpecPath
    target: ResourceKey
    explicit: bool = False  # from dependsOn rather than a field that names a resource


def of_virtual_machine(key: ResourceKey, spec: Mapping[str, Any]) -> list[Reference]:
    """Disks' images and datastores, NICs' networks and groups, the host, ``dependsOn``. The host is the
    resolved one where the planner chose it, else the one ``placement`` asks for. Malformed ``dependsOn`` entries
    are left out (validation reports them)."""
    ns = key.namespace
    found: list[Reference] = []
    for index, disk in enumerate(spec.get("disks", ())):
        if disk.get("image"):
            found.append(Reference(("disks", index, "image"), ResourceKey.of(Kind.IMAGE, disk["image"], ns)))
        if disk.get("datastore"):
            found.append(Reference(("disks", index, "datastore"), ResourceKey.of(Kind.DATASTORE, disk["datastore"])))
    for index, nic in enumerate(spec.get("nics", ())):
        found.append(Reference(("nics", index, "network"), ResourceKey.of(Kind.NETWORK, nic["network"], ns)))
        for group_index, group in enumerate(nic.get("securityGroups", ())):
            path = ("nics", index, "securityGroups", group_index)
            found.append(Reference(path, ResourceKey.of(Kind.SECURITY_GROUP, group, ns)))
    if spec.get("host"):
        found.append(Reference(("host",), ResourceKey.of(Kind.HOST, spec["host"])))
    else:
        host = (spec.get("placement") or {}).get("host")
        if host:
            found.append(Reference(("placement", "host"), ResourceKey.of(Kind.HOST, host)))
    for index, text in enumerate(spec.get("dependsOn", ())):
        try:
            target = ResourceKey.parse(text, namespace=ns)
        except ValueError:
            continue
        found.append(Reference(("dependsOn", index), target, explicit=True))
    return found


def of_image(key: ResourceKey, spec: Mapping[str, Any]) -> list[Reference]:
    """The datastore that holds the image, the marketplace it comes from, and the hosts it spans."""
    found = [Reference(("datastore",), ResourceKey.of(Kind.DATASTORE, spec["datastore"]))]
    source = spec.get("source")
    if isinstance(source, Mapping) and source.get("marketplace"):
        marketplace = str(source["marketplace"]).split("/", 1)[0]
        found.append(Reference(("source", "marketplace"), ResourceKey.of(Kind.MARKETPLACE, marketplace)))
    return found + of_hosts(key, spec)


def of_hosts(key: ResourceKey, spec: Mapping[str, Any]) -> list[Reference]:
    """The hosts a multi-host resource lives on (its ``hosts`` field, or the span the planner resolved)."""
    return [
        Reference(("hosts", index), ResourceKey.of(Kind.HOST, host)) for index, host in enumerate(spec.get("hosts", ()))
    ]


def of_nothing(key: ResourceKey, spec: Mapping[str, Any]) -> list[Reference]:
    return []


ReferenceReader = Callable[[ResourceKey, Mapping[str, Any]], list[Reference]]

# Each kind's reader; the reconcilers take theirs from here.
BY_KIND: Mapping[Kind, ReferenceReader] = {
    Kind.HOST: of_nothing,
    Kind.DATASTORE: of_hosts,
    Kind.MARKETPLACE: of_nothing,
    Kind.IMAGE: of_image,
    Kind.NETWORK: of_hosts,
    Kind.SECURITY_GROUP: of_hosts,
    Kind.VIRTUAL_MACHINE: of_virtual_machine,
    Kind.HOOK: of_nothing,
}
