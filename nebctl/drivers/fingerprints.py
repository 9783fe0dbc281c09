"""Fingerprints: the few live attributes of a network, pool, image volume or filter that nebctl manages, in the
terms of the spec, so that drift can tell an object changed outside nebctl from one as it was applied.

A monitoring driver's ``inventory`` puts one on each ``OwnedObject`` it can read cheaply (from what its bulk
listing already fetched); the spanned reconcilers build the same from the applied spec and compare the two
(``reconcilers.spanned``). Both sides use the functions here, so the spelling of a value (a rule, a size)
cannot differ between what was applied and what is seen. Every value is a string: a fingerprint crosses into
and out of external programs as JSON, and the drift sentence prints it as it is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from nebctl.core.quantities import format_quantity
from nebctl.drivers.types import NetworkDefinition, SecurityRuleDefinition

Fingerprint = Mapping[str, str]


def of_network(network: NetworkDefinition) -> dict[str, str]:
    """A network's address plan (what every lease on it was made from), and what else of it a driver applies:
    the host bridge of a bridge-mode network; the MTU and DNS servers of a network nebctl's own bridge carries
    (``default`` and ``none`` when not declared, as libvirt leaves them out of the XML then, so a network
    given one by hand differs). A bridge-mode network's MTU and DNS are the LAN's, not the driver's: left out."""
    found = {
        "mode": network.mode,
        "cidr": _block(network.cidr),
        "gateway": network.gateway,
        "range": f"{network.range_first}-{network.range_last}",
    }
    if network.mode == "bridge":
        found["bridge"] = network.bridge or ""
    else:
        found["mtu"] = of_mtu(network.mtu)
        found["dns"] = of_dns(network.dns)
    return found


def of_mtu(mtu: int | None) -> str:
    return "default" if mtu is None else str(int(mtu))


def of_dns(servers: Iterable[str]) -> str:
    """DNS servers in the order they are handed out (the first is asked first); ``none``."""
    return ", ".join(str(server) for server in servers) or "none"


def of_pool(*, type: str, path: str) -> dict[str, str]:
    """A datastore's pool: its type and where it keeps its volumes (a trailing slash is no difference)."""
    return {"type": type, "path": path.rstrip("/") or "/"}


def of_volume(*, format: str, capacity: int) -> dict[str, str]:
    """An image volume: its format and virtual size (another image put in its place differs in one or both)."""
    return {"format": format, "size": format_quantity(int(capacity))}


def rule_entries(rules: Iterable[SecurityRuleDefinition]) -> list[str]:
    """A group's rules as sorted entries of one port each (``in tcp 22 0.0.0.0/0``): the form a filter holds
    them in, since each port of a TCP or UDP rule is a filter rule of its own (``all``: every port)."""
    entries: list[str] = []
    for rule in rules:
        protocol = "any" if rule.protocol in ("any", "all") else rule.protocol
        ports = rule.ports if rule.ports and protocol in ("tcp", "udp") else ("all",)
        entries += [rule_entry(rule.direction, protocol, _port(port), rule.cidr) for port in ports]
    return sorted(entries)


def rule_entry(direction: str, protocol: str, port: str, cidr: str) -> str:
    return f"{direction} {protocol} {port} {_block(cidr)}"


def of_rules(entries: Iterable[str]) -> dict[str, str]:
    """A security group's filter, from its entries (``rule_entries``); ``none`` when it has no rule."""
    return {"rules": ", ".join(sorted(entries)) or "none"}


def of_security_group(rules: Iterable[SecurityRuleDefinition]) -> dict[str, str]:
    return of_rules(rule_entries(rules))


def rules_from_payload(rules: Iterable[Mapping[str, Any]]) -> list[SecurityRuleDefinition]:
    """Rules written as the spec writes them (``direction``, ``protocol``, ``ports``, ``cidr``): the sim's
    stored rules, an exec program's ``list`` answer."""
    return [
        SecurityRuleDefinition(
            direction=str(rule["direction"]),
            protocol=str(rule.get("protocol", "any")),
            ports=tuple(str(port) for port in rule.get("ports") or ()),
            cidr=str(rule.get("cidr", "0.0.0.0/0")),
        )
        for rule in rules
    ]


def from_attributes(what: str, attributes: Mapping[str, Any]) -> dict[str, str]:
    """The fingerprint of an object an external program listed (the exec driver's ``list``), from its
    ``attributes`` in the spec's terms: any may be left out. Raises ``ValueError`` naming a value of the wrong
    type, or an attribute this kind of object does not have."""
    allowed = _ATTRIBUTES.get(what, ())
    unknown = sorted(set(attributes) - set(allowed))
    if unknown:
        raise ValueError(f"a {what} has no attribute {', '.join(unknown)} (known: {', '.join(allowed) or 'none'})")
    found: dict[str, str] = {}
    for name, value in attributes.items():
        found.update(_NUMBERED[name](value) if name in _NUMBERED else _text(name, value))
    return found


def _text(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    if name == "cidr":
        return {"cidr": _block(value)}
    if name == "path":
        return {"path": value.rstrip("/") or "/"}
    return {name: value}


def _rules(value: Any) -> dict[str, str]:
    if not isinstance(value, list) or not all(isinstance(rule, Mapping) for rule in value):
        raise ValueError("rules: expected a list of rules ({direction, protocol, ports, cidr})")
    return of_security_group(rules_from_payload(value))


def _mtu(value: Any) -> dict[str, str]:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ValueError(f"mtu: expected a number of bytes or null (the default), got {value!r}")
    return {"mtu": of_mtu(value)}


def _dns(value: Any) -> dict[str, str]:
    if not isinstance(value, list) or not all(isinstance(server, str) for server in value):
        raise ValueError(f"dns: expected a list of addresses, got {value!r}")
    return {"dns": of_dns(value)}


def _size(value: Any) -> dict[str, str]:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"size: expected a number of bytes, got {value!r}")
    return {"size": format_quantity(value)}


# The attributes that are no plain string, each with its reader.
_NUMBERED = {"rules": _rules, "mtu": _mtu, "dns": _dns, "size": _size}

_ATTRIBUTES = {
    "network": ("mode", "cidr", "gateway", "range", "bridge", "mtu", "dns"),
    "filter": ("rules",),
    "pool": ("type", "path"),
    "volume": ("format", "size"),
}


def _block(cidr: str) -> str:
    try:
        return str(ipaddress.ip_network(cidr, strict=False))
    except ValueError:
        return cidr  # shown as it is: a value nebctl would not have applied is a difference anyway


def _port(port: str) -> str:
    low, _, high = str(port).partition("-")
    return low if not high or high == low else f"{low}-{high}"
