"""The fingerprints of libvirt networks, nwfilters, pools and volumes, read from their XML
(``drivers.fingerprints``).

``LibvirtMonitoring.inventory`` hands each document it reads to these functions: what was built by
``xmlbuild`` (``NetworkElement``, ``FilterElement``, ``PoolElement``) is read back in the spec's terms, so that a
network's addresses, a filter's rules or a pool's path edited with virsh show as drift. Pure: XML text in,
fingerprint out (but for ``group_filter_fingerprint``, which reads the filter it is handed); an element nebctl
never writes is left out of the fingerprint rather than guessed at.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from typing import Any

from nebctl.drivers import fingerprints

# The filters of security groups (``reconcilers.identity.security_group_filter``): only theirs are read, not
# libvirt's own dozens nor the per-NIC combinations.
GROUP_FILTER_PREFIX = "nebctl-sg-"

# The rules every group filter carries besides the group's own (``FilterElement.build``): DHCP both ways, and
# the last rule dropping the rest. They are no rule of the spec.
_DHCP = {("out", "udp", "67"), ("in", "udp", "68")}


def network_fingerprint(xml: str) -> dict[str, str]:
    """Mode, address block, gateway and DHCP range of a ``<network>`` (``none`` when it has no DHCP range); the
    host bridge of a bridge-mode one, the MTU and DNS forwarders of another (``fingerprints.of_network``:
    libvirt writes no ``<mtu>`` nor ``<dns>`` when none was given, and adds none when it starts the network)."""
    document = ET.fromstring(xml)
    forward = document.find("./forward")
    mode = forward.get("mode", "nat") if forward is not None else "isolated"
    found = {"mode": "isolated" if mode == "none" else mode}
    if found["mode"] == "bridge":
        bridge = document.find("./bridge")
        found["bridge"] = bridge.get("name", "") if bridge is not None else ""
    else:
        mtu = document.find("./mtu")
        found["mtu"] = mtu.get("size", "default") if mtu is not None else "default"
        servers = [f.get("addr", "") for f in document.findall("./dns/forwarder") if f.get("addr")]
        found["dns"] = fingerprints.of_dns(servers)
    ip = document.find("./ip")
    if ip is None or ip.get("family", "ipv4") != "ipv4" or not ip.get("address"):
        return found
    address = ip.get("address", "")
    mask = ip.get("prefix") or ip.get("netmask") or "32"
    try:
        found["cidr"] = str(ipaddress.IPv4Network(f"{address}/{mask}", strict=False))
    except ValueError:
        found["cidr"] = f"{address}/{mask}"
    found["gateway"] = address
    span = ip.find("./dhcp/range")
    found["range"] = f"{span.get('start')}-{span.get('end')}" if span is not None else "none"
    return found


def filter_fingerprint(xml: str) -> dict[str, str]:
    """The rules of a security group's ``<filter>``, without the DHCP and drop rules every group has. A rule
    that does not accept says so after its entry (``in tcp 22 0.0.0.0/0 (drop)``)."""
    document = ET.fromstring(xml)
    entries: list[str] = []
    dhcp = set(_DHCP)
    for rule in document.findall("./rule"):
        protocol_element = next(iter(rule), None)
        if protocol_element is None:
            continue
        action, direction = rule.get("action", ""), rule.get("direction", "")
        protocol = "any" if protocol_element.tag == "all" else protocol_element.tag
        if action == "drop" and direction == "inout" and protocol == "any" and not protocol_element.attrib:
            continue  # the drop of the rest
        low, high = protocol_element.get("dstportstart"), protocol_element.get("dstportend")
        port = "all" if low is None else (low if high in (None, low) else f"{low}-{high}")
        if action == "accept" and (direction, protocol, port) in dhcp:
            dhcp.discard((direction, protocol, port))  # once: a group may allow the same port itself
            continue
        peer = "src" if direction == "in" else "dst"
        address = protocol_element.get(f"{peer}ipaddr")
        cidr = f"{address}/{protocol_element.get(f'{peer}ipmask', '32')}" if address else "0.0.0.0/0"
        entry = fingerprints.rule_entry(direction, protocol, port, cidr)
        entries.append(entry if action == "accept" else f"{entry} ({action})")
    return fingerprints.of_rules(entries)


def group_filter_fingerprint(nwfilter: Any) -> dict[str, str] | None:
    """The fingerprint of a listed ``virNWFilter`` that is a security group's; None for any other filter."""
    return filter_fingerprint(nwfilter.XMLDesc(0)) if nwfilter.name().startswith(GROUP_FILTER_PREFIX) else None


def pool_fingerprint(xml: str) -> dict[str, str]:
    """A ``<pool>``'s type and target path."""
    document = ET.fromstring(xml)
    path = document.findtext("./target/path")
    found = {"type": document.get("type", "")}
    if path:
        found.update(fingerprints.of_pool(type=found["type"], path=path))
    return found


def volume_fingerprint(xml: str) -> dict[str, str]:
    """A ``<volume>``'s format and virtual size (``fingerprints.of_volume``), read as ``storage.volume_info``
    reads them for the import's answer: a volume without a ``<format>`` is raw."""
    document = ET.fromstring(xml)
    format_element = document.find("./target/format")
    found = {"format": format_element.get("type", "raw") if format_element is not None else "raw"}
    capacity = document.findtext("./capacity")
    if capacity is not None and capacity.strip().isdigit():
        found.update(fingerprints.of_volume(format=found["format"], capacity=int(capacity)))
    return found
