"""Network XML: libvirt ``<network>`` documents for nat, isolated and bridge modes, and DHCP host entries.

``LibvirtNetwork.create`` defines the document of ``NetworkElement.from_definition``; ``pre``/``clean`` send
``DhcpHostElement`` documents to ``virNetworkUpdate`` to reserve and release a VM's address.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from nebctl.drivers.libvirt.xmlbuild.base import XMLBuilder, child, metadata
from nebctl.drivers.types import NetworkDefinition, Ownership


@dataclass(frozen=True)
class DhcpHostElement(XMLBuilder):
    """``<host mac= ip=/>``: a static lease, in a network document or as a ``virNetworkUpdate`` section."""

    mac: str
    ip: str

    def build(self) -> ET.Element:
        return ET.Element("host", {"mac": self.mac, "ip": self.ip})


@dataclass(frozen=True)
class NetworkElement(XMLBuilder):
    name: str
    mode: str  # nat | isolated | bridge
    cidr: str
    gateway: str
    range_first: str
    range_last: str
    bridge: str | None = None
    dns: tuple[str, ...] = ()
    mtu: int | None = None
    hosts: tuple[DhcpHostElement, ...] = ()
    owner: Ownership | None = None

    @classmethod
    def from_definition(cls, network: NetworkDefinition) -> NetworkElement:
        return cls(
            name=network.name,
            mode=network.mode,
            cidr=network.cidr,
            gateway=network.gateway,
            range_first=network.range_first,
            range_last=network.range_last,
            bridge=network.bridge,
            dns=network.dns,
            mtu=network.mtu,
            owner=network.owner,
        )

    def build(self) -> ET.Element:
        network = ET.Element("network")
        child(network, "name", self.name)
        metadata(network, self.owner)
        if self.mode == "bridge":
            # An existing host bridge: libvirt only attaches taps to it; addressing is the LAN's business.
            child(network, "forward", mode="bridge")
            child(network, "bridge", name=self.bridge or "")
            return network
        if self.mode == "nat":
            child(network, "forward", mode="nat")
        elif self.mode != "isolated":
            raise ValueError(f"unknown network mode {self.mode!r}")
        # isolated: no <forward> at all, which libvirt reads as mode 'none' (a bridge with no routing out).
        # The bridge name is left to libvirt (virbrN): names are limited to 15 characters.
        child(network, "bridge", stp="on", delay="0")
        if self.mtu is not None:
            child(network, "mtu", size=str(self.mtu))
        if self.dns:
            dns = child(network, "dns")
            for server in self.dns:
                child(dns, "forwarder", addr=server)
        block = ipaddress.IPv4Network(self.cidr)
        ip = child(network, "ip", address=self.gateway, netmask=str(block.netmask))
        dhcp = child(ip, "dhcp")
        child(dhcp, "range", start=self.range_first, end=self.range_last)
        for host in self.hosts:
            dhcp.append(host.build())
        return network
