"""Security groups: a filter of rules defined on each host; rule changes are applied in place.

VM NICs refer to the filter by its deterministic name, so replacing the rules of a group takes effect on every
NIC that uses it without touching the VMs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nebctl.core.families import Family
from nebctl.core.fields import Effect, FieldRule
from nebctl.core.keys import Kind, ResourceKey
from nebctl.drivers import fingerprints
from nebctl.drivers.types import Ownership, SecurityGroupDefinition, SecurityRuleDefinition
from nebctl.reconcilers.base import World
from nebctl.reconcilers.identity import security_group_filter
from nebctl.reconcilers.spanned import Repair, SpannedReconciler, Step, spec_of

RULES = [FieldRule("rules", Effect.IN_PLACE, "the filter's rules are replaced on every host")]


def definition(key: ResourceKey, spec: Mapping[str, Any], owner: Ownership | None) -> SecurityGroupDefinition:
    rules = tuple(
        SecurityRuleDefinition(
            direction=str(rule["direction"]),
            protocol=str(rule.get("protocol", "any")),
            ports=tuple(str(port) for port in rule.get("ports", [])),
            cidr=str(rule.get("cidr", "0.0.0.0/0")),
        )
        for rule in spec.get("rules", [])
    )
    return SecurityGroupDefinition(name=security_group_filter(key), rules=rules, owner=owner)


def _apply(key: ResourceKey, host: str, world: World) -> Mapping[str, Any]:
    world.drivers(host).network.update_sg(
        world.host_ref(host), definition(key, spec_of(world, key), world.ownership(key))
    )
    return {}


def _delete(key: ResourceKey, host: str, world: World) -> Mapping[str, Any]:
    world.drivers(host).network.delete_sg(world.host_ref(host), security_group_filter(key))
    return {}


def _fingerprint(key: ResourceKey, applied: Mapping[str, Any], live: Mapping[str, Any]) -> Mapping[str, str] | None:
    try:
        return fingerprints.of_security_group(definition(key, applied, None).rules)
    except (AttributeError, KeyError, TypeError):
        return None  # a record another version wrote, without the rules' shape: judged by presence only


UPDATE = Step(Family.NETWORK, "update_sg", "update the security group's rules", _apply)

RECONCILER = SpannedReconciler(
    kind=Kind.SECURITY_GROUP,
    live_object=lambda key: ("filter", security_group_filter(key)),
    fingerprint=_fingerprint,
    # Rules edited by hand are replaced by the applied ones in place: NICs keep referring to the same filter.
    repair=Repair(UPDATE, "its rules will be set again there"),
    rules=RULES,
    create=Step(Family.NETWORK, "update_sg", "define the security group", _apply),
    delete=Step(Family.NETWORK, "delete_sg", "delete the security group", _delete),
    update=UPDATE,
)
