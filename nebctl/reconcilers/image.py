"""Images: imported into their datastore on each host that datastore spans, the digest verified.

Any change to where the image comes from replaces it: the new content is imported and the old volume deleted.
The planner refuses to replace an image that existing VM disks use as a backing file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nebctl.core.families import Family
from nebctl.core.fields import Effect, FieldRule
from nebctl.core.keys import Kind, ResourceKey
from nebctl.drivers import fingerprints
from nebctl.drivers.types import ImageImport
from nebctl.reconcilers.base import World
from nebctl.reconcilers.identity import image_volume, live_name
from nebctl.reconcilers.spanned import SpannedReconciler, Step, spec_of, storage_hosts
from nebctl.schemas.models import AnyManifest, Image


def _span(
    key: ResourceKey, document: AnyManifest, documents: Mapping[ResourceKey, AnyManifest], hosts: Sequence[str]
) -> tuple[str, ...]:
    assert isinstance(document, Image)
    datastore = documents.get(ResourceKey.of(Kind.DATASTORE, document.spec.datastore))
    chosen = getattr(datastore.spec, "hosts", None) if datastore is not None else None
    known = set(hosts)  # a thousand hosts: a list lookup per host was quadratic
    # As its datastore's span: the hosts it names, else every host but cloud hosts (they keep no datastores).
    return tuple(sorted(host for host in (chosen or storage_hosts(documents, hosts)) if host in known))


def datastore_key(spec: Mapping[str, Any]) -> ResourceKey:
    return ResourceKey.of(Kind.DATASTORE, str(spec["datastore"]))


def _import(key: ResourceKey, host: str, world: World) -> Mapping[str, Any]:
    spec = spec_of(world, key)
    source = spec["source"]
    sha256, image_format, size = spec.get("sha256"), spec.get("format"), None
    result: dict[str, Any] = {}
    if isinstance(source, Mapping):
        marketplace, _, wanted = str(source["marketplace"]).partition("/")
        app, _, version = wanted.partition("@")
        appliance = world.appliance(marketplace, app, version or None)
        source, sha256, size = appliance.source, appliance.sha256, appliance.size
        image_format = image_format or appliance.format
        # The version it got is recorded: without one asked, the newest at the time of the import.
        result["appliance"] = {"name": appliance.name, "version": appliance.version, "source": appliance.source}
    # An http(s) image is downloaded once, into the controller's cache; each host is fed from that copy.
    local = world.fetch_image(str(source), sha256=sha256, size=size)
    if local.transfer is not None:
        result["transfer"] = dict(local.transfer)
    request = ImageImport(
        volume=image_volume(key),
        source=local.path,
        sha256=local.sha256,
        format=image_format,
        owner=world.ownership(key),
    )
    volume = world.drivers(host).storage.import_image(world.host_ref(host), live_name(datastore_key(spec)), request)
    return {**result, "format": volume.format, "size": volume.capacity, "sha256": volume.sha256}


def _delete(key: ResourceKey, host: str, world: World) -> Mapping[str, Any]:
    spec = spec_of(world, key)
    world.drivers(host).storage.delete(world.host_ref(host), live_name(datastore_key(spec)), image_volume(key))
    return {}


def _fingerprint(key: ResourceKey, applied: Mapping[str, Any], live: Mapping[str, Any]) -> Mapping[str, str] | None:
    """The format and size the import gave (recorded in the live values): the spec may leave both to the image."""
    if live.get("format") is None or live.get("size") is None:
        return None
    return fingerprints.of_volume(format=str(live["format"]), capacity=int(live["size"]))


RECONCILER = SpannedReconciler(
    kind=Kind.IMAGE,
    live_object=lambda key: ("volume", image_volume(key)),
    # Another image put in the volume's place: it is deleted and imported again on that host (refused while VM
    # disks there use it as their backing file).
    fingerprint=_fingerprint,
    # Every field of an image but its cloud sources decides its content: those changes replace it. The cloud
    # sources are read when a VM is deployed on a cloud host: a change applies to the VMs deployed after it.
    rules=[FieldRule("cloud", Effect.NONE, "read when a VM is deployed on a cloud host")],
    create=Step(Family.STORAGE, "import_image", "import the image", _import),
    delete=Step(Family.STORAGE, "delete", "delete the image volume", _delete),
    span=_span,
    pool=lambda spec: live_name(datastore_key(spec)),
)
