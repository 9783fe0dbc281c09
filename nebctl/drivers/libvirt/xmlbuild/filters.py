"""Network filter XML: a security group as a libvirt nwfilter, and the per-NIC filter combining several.

``LibvirtNetwork.update_sg`` defines ``FilterElement.from_group``; the domain builder refers to
``nic_filter_name`` on each NIC. Rules accept what the group allows and a last rule drops the rest of the
IPv4 traffic; nwfilter tracks connections, so replies to allowed traffic pass in the other direction.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from nebctl.drivers.libvirt.xmlbuild.base import XMLBuilder, child
from nebctl.drivers.types import SecurityGroupDefinition, SecurityRuleDefinition

FILTER_UUID_NAMESPACE = uuid.UUID("5a0f3d52-6f0e-4c55-9a53-6e6562637463")
ACCEPT_PRIORITY = "500"
DROP_PRIORITY = "1000"


def filter_uuid(name: str) -> str:
    """libvirt refuses to redefine a filter under a new uuid, so the uuid follows from the name."""
    return str(uuid.uuid5(FILTER_UUID_NAMESPACE, name))


# Bits of the digest a combined filter's name takes. Fewer are only useful to make collisions likely enough to
# be seen (the driver's ``nic_filter_bits`` option, set by tests).
NIC_FILTER_BITS = 64


def nic_filter_name(groups: tuple[str, ...], attempt: int = 0, bits: int = NIC_FILTER_BITS) -> str | None:
    """The filter a NIC references: none, the group's own filter, or a combination named after the set: the
    first ``bits`` bits of a digest of it. Two sets may still name alike, so the driver takes the next
    ``attempt`` while the name is another set's (``nicfilters``); attempt 0 is the name nebctl always gave."""
    unique = tuple(sorted(set(groups)))
    if not unique:
        return None
    if len(unique) == 1:
        return unique[0]
    text = "\0".join(unique) + (f"\0#{attempt}" if attempt else "")  # "#" starts no filter name
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (NIC_FILTER_BITS - bits)
    return f"nebctl-nic-{value:016x}"


@dataclass(frozen=True)
class FilterRuleElement(XMLBuilder):
    """One accept rule: ``in`` is traffic to the VM (the peer is the source), ``out`` traffic from it."""

    rule: SecurityRuleDefinition
    port: str | None = None  # one entry of rule.ports ("22" or "8000-8080"); None for all ports

    def build(self) -> ET.Element:
        element = ET.Element(
            "rule", {"action": "accept", "direction": self.rule.direction, "priority": ACCEPT_PRIORITY}
        )
        protocol = "all" if self.rule.protocol == "any" else self.rule.protocol
        match: dict[str, str] = {}
        block = ipaddress.IPv4Network(self.rule.cidr)
        if block.prefixlen:
            peer = "src" if self.rule.direction == "in" else "dst"
            match[f"{peer}ipaddr"] = str(block.network_address)
            match[f"{peer}ipmask"] = str(block.prefixlen)
        if self.port is not None:
            low, _, high = self.port.partition("-")
            match["dstportstart"] = low
            match["dstportend"] = high or low
        child(element, protocol, **match)
        return element


@dataclass(frozen=True)
class FilterElement(XMLBuilder):
    name: str
    rules: tuple[FilterRuleElement, ...] = ()
    includes: tuple[str, ...] = ()  # other filters referenced (the per-NIC combination)
    drop_rest: bool = True

    @classmethod
    def from_group(cls, group: SecurityGroupDefinition) -> FilterElement:
        rules: list[FilterRuleElement] = []
        for rule in group.rules:
            if rule.ports and rule.protocol in ("tcp", "udp"):
                rules.extend(FilterRuleElement(rule, port) for port in rule.ports)
            else:
                rules.append(FilterRuleElement(rule))
        return cls(name=group.name, rules=tuple(rules))

    @classmethod
    def combining(cls, name: str, groups: tuple[str, ...]) -> FilterElement:
        return cls(name=name, includes=tuple(sorted(set(groups))), drop_rest=False)

    def build(self) -> ET.Element:
        element = ET.Element("filter", {"name": self.name, "chain": "root"})
        child(element, "uuid", filter_uuid(self.name))
        for include in self.includes:
            child(element, "filterref", filter=include)
        if self.drop_rest:
            # A VM must still get its address and resolve its neighbours: DHCP is allowed both ways
            # (ARP is another layer, untouched by IPv4 rules).
            dhcp_out = child(element, "rule", action="accept", direction="out", priority=ACCEPT_PRIORITY)
            child(dhcp_out, "udp", dstportstart="67", dstportend="67")
            dhcp_in = child(element, "rule", action="accept", direction="in", priority=ACCEPT_PRIORITY)
            child(dhcp_in, "udp", dstportstart="68", dstportend="68")
        for rule in self.rules:
            element.append(rule.build())
        if self.drop_rest:
            drop = child(element, "rule", action="drop", direction="inout", priority=DROP_PRIORITY)
            child(drop, "all")
        return element
