"""Virtual networks: created on each host they span; addressing changes replace them.

The address plan (cidr, gateway, range, mode) is baked into the live network and every lease on it, so
changing it means a new network. Only the span changes in place.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from nebctl.core.families import Family
from nebctl.core.keys import Kind, ResourceKey
from nebctl.drivers import fingerprints
from nebctl.drivers.types import NetworkDefinition, Ownership
from nebctl.reconcilers.base import World
from nebctl.reconcilers.identity import live_name
from nebctl.reconcilers.spanned import SpannedReconciler, Step, spec_of
from nebctl.schemas.models import NetworkSpec


def definition(key: ResourceKey, spec: Mapping[str, Any], owner: Ownership | None) -> NetworkDefinition:
    model = NetworkSpec.model_validate({k: v for k, v in spec.items() if k not in ("hosts", "metadata")})
    first, last = model.effective_range
    return NetworkDefinition(
        name=live_name(key),
        mode=model.mode.value,
        cidr=str(model.cidr),
        gateway=str(model.effective_gateway),
        range_first=str(first),
        range_last=str(last),
        bridge=model.bridge,
        dns=tuple(str(server) for server in model.dns),
        mtu=model.mtu,
        owner=owner,
    )


def leasable(spec: NetworkSpec) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    return spec.effective_range


def _create(key: ResourceKey, host: str, world: World) -> Mapping[str, Any]:
    status = world.drivers(host).network.create(
        world.host_ref(host), definition(key, spec_of(world, key), world.ownership(key))
    )
    return {f"bridge.{host}": status.bridge}


def _delete(key: ResourceKey, host: str, world: World) -> Mapping[str, Any]:
    world.drivers(host).network.delete(world.host_ref(host), live_name(key))
    return {f"bridge.{host}": None}


def _fingerprint(key: ResourceKey, applied: Mapping[str, Any], live: Mapping[str, Any]) -> Mapping[str, str] | None:
    """The address plan the applied spec gives (its defaults resolved, as the network was created); None for a
    record this nebctl cannot read as a network (written by another version): its presence is all that is judged."""
    try:
        return fingerprints.of_network(definition(key, applied, None))
    except ValueError:
        return None


RECONCILER = SpannedReconciler(
    kind=Kind.NETWORK,
    live_object=lambda key: ("network", live_name(key)),
    # A network cannot be redefined under its leases: a changed one is deleted and created again on its host
    # (refused there while NICs still use it).
    fingerprint=_fingerprint,
    rules=[],
    create=Step(Family.NETWORK, "create", "create the network", _create),
    delete=Step(Family.NETWORK, "delete", "delete the network", _delete),
)
