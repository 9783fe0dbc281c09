"""Datastores: a storage pool (a directory) on each host the datastore spans.

Moving a datastore to another path would strand the volumes in it, so ``path`` and ``type`` cannot change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nebctl.core.families import Family
from nebctl.core.fields import Effect, FieldRule
from nebctl.core.keys import Kind, ResourceKey
from nebctl.drivers import fingerprints
from nebctl.drivers.types import DatastoreDefinition
from nebctl.reconcilers.base import World
from nebctl.reconcilers.identity import live_name
from nebctl.reconcilers.spanned import Repair, SpannedReconciler, Step, span_of_storage, spec_of

RULES = [
    FieldRule("path", Effect.IMMUTABLE, "the volumes would be stranded; declare a new datastore instead"),
    FieldRule("type", Effect.IMMUTABLE, "the pool type cannot change; declare a new datastore instead"),
]


def _create(key: ResourceKey, host: str, world: World) -> Mapping[str, Any]:
    spec = spec_of(world, key)
    definition = DatastoreDefinition(
        name=live_name(key), path=str(spec["path"]), type=str(spec["type"]), owner=world.ownership(key)
    )
    status = world.drivers(host).storage.create_datastore(world.host_ref(host), definition)
    return {f"capacity.{host}": status.total}


def _delete(key: ResourceKey, host: str, world: World) -> Mapping[str, Any]:
    world.drivers(host).storage.delete_datastore(world.host_ref(host), live_name(key))
    return {f"capacity.{host}": None}


def _fingerprint(key: ResourceKey, applied: Mapping[str, Any], live: Mapping[str, Any]) -> Mapping[str, str] | None:
    if "type" not in applied or "path" not in applied:
        return None
    return fingerprints.of_pool(type=str(applied["type"]), path=str(applied["path"]))


CREATE = Step(Family.STORAGE, "create_datastore", "create the storage pool", _create)

RECONCILER = SpannedReconciler(
    kind=Kind.DATASTORE,
    live_object=lambda key: ("pool", live_name(key)),
    fingerprint=_fingerprint,
    # A pool holds volumes, so it is never deleted to be repaired: it is defined again as applied (libvirt
    # stops it, defines it at the applied path and starts it: no volume file moves).
    repair=Repair(CREATE, "its pool will be defined again there"),
    rules=RULES,
    create=CREATE,
    delete=Step(Family.STORAGE, "delete_datastore", "delete the storage pool", _delete),
    span=span_of_storage,
)
