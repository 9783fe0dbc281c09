"""The libvirt network driver: libvirt networks (nat, isolated, bridge), static DHCP leases for VMs' addresses,
and security groups as nwfilters bound to the NICs. A group's filter made for an owner gets an entry in the
host's ownership ledger (``ledger``: an nwfilter has no ``<metadata>``), removed with it.

Registered as ``libvirt`` for the network family. A NIC's address is reserved with ``virNetworkUpdate`` (live
and in the persistent config), so the running dnsmasq hands it out without a network restart.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import ClassVar

import libvirt

from nebctl.core.families import Family
from nebctl.drivers.errors import ConflictError
from nebctl.drivers.libvirt import ledger
from nebctl.drivers.libvirt.common import DRIVER_NAME, LibvirtDriverBase, ignoring
from nebctl.drivers.libvirt.failures import error_code
from nebctl.drivers.libvirt.nicfilters import combined_filter
from nebctl.drivers.libvirt.xmlbuild.base import OwnerElement
from nebctl.drivers.libvirt.xmlbuild.filters import FilterElement
from nebctl.drivers.libvirt.xmlbuild.networks import DhcpHostElement, NetworkElement
from nebctl.drivers.types import HostRef, NetworkDefinition, NetworkStatus, NicDefinition, SecurityGroupDefinition


def network_status(network: libvirt.virNetwork, xml: str | None = None) -> NetworkStatus:
    """The status of ``network``, from its XML (``xml`` when the caller already read it)."""
    document = ET.fromstring(xml if xml is not None else network.XMLDesc(0))
    bridge = document.find("./bridge")
    leases = {
        host.get("mac", ""): host.get("ip", "")
        for host in document.findall("./ip/dhcp/host")
        if host.get("mac") and host.get("ip")
    }
    return NetworkStatus(
        name=network.name(),
        active=bool(network.isActive()),
        bridge=bridge.get("name") if bridge is not None else None,
        leases=leases,
        owner=OwnerElement.parse(document),
    )


def _update_flags(network: libvirt.virNetwork) -> int:
    flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    if network.isActive():
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
    return int(flags)


class LibvirtNetwork(LibvirtDriverBase):
    family: ClassVar[Family] = Family.NETWORK
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"create", "delete", "pre", "post", "clean", "nat", "isolated", "bridge", "security-groups", "static-leases"}
    )

    def create(self, host: HostRef, network: NetworkDefinition) -> NetworkStatus:
        with self._using(host, f"create network {network.name}") as connection:
            try:
                handle = connection.networkLookupByName(network.name)
            except libvirt.libvirtError as error:
                if error_code(error) != libvirt.VIR_ERR_NO_NETWORK:
                    raise
                handle = connection.networkDefineXML(NetworkElement.from_definition(network).to_xml())
            if not handle.isActive():
                handle.create()
            handle.setAutostart(1)
            return network_status(handle)

    def delete(self, host: HostRef, name: str) -> None:
        with self._using(host, f"delete network {name}") as connection:
            handle = connection.networkLookupByName(name)
            reserved = ET.fromstring(handle.XMLDesc(0)).findall("./ip/dhcp/host")
            if reserved:
                raise ConflictError(
                    f"network {name} still has {len(reserved)} NIC address(es); clean them first", driver=DRIVER_NAME
                )
            if handle.isActive():
                handle.destroy()
            handle.undefine()

    # --- NICs ---------------------------------------------------------------------------------------------

    def pre(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        with self._using(host, f"prepare NIC {nic.mac} of {vm_uuid}") as connection:
            self._reserve(connection.networkLookupByName(nic.network), nic.mac, nic.ip)
            combined_filter(connection, nic.security_groups, bits=self.nic_filter_bits, define=True)

    def _reserve(self, network: libvirt.virNetwork, mac: str, ip: str | None) -> None:
        """A static DHCP entry for ``mac``: at ``ip``, or (without one) at the lowest free address of the
        range, so that the address is known before the VM boots and stays the same across restarts."""
        document = ET.fromstring(network.XMLDesc(0))
        dhcp = document.find("./ip/dhcp")
        if dhcp is None:
            return  # bridge mode, or no DHCP: the address is the guest's own configuration
        taken: set[str] = set()
        for host in dhcp.findall("./host"):
            if host.get("mac", "").lower() == mac.lower():
                if ip is None or host.get("ip") == ip:
                    return
                self._release(network, host.get("mac", mac), host.get("ip", ""))
            elif ip is not None and host.get("ip") == ip:
                raise ConflictError(f"{ip} on {network.name()} is reserved for {host.get('mac')}", driver=DRIVER_NAME)
            else:
                taken.add(host.get("ip", ""))
        if ip is None:
            ip = self._free_address(dhcp, taken, network.name())
        network.update(
            libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
            libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
            -1,
            DhcpHostElement(mac=mac, ip=ip).to_xml(),
            _update_flags(network),
        )

    @staticmethod
    def _free_address(dhcp: ET.Element, taken: set[str], name: str) -> str:
        for address_range in dhcp.findall("./range"):
            first = ipaddress.IPv4Address(address_range.get("start", "0.0.0.0"))
            last = ipaddress.IPv4Address(address_range.get("end", "0.0.0.0"))
            address = first
            while address <= last:
                if str(address) not in taken:
                    return str(address)
                address += 1
        raise ConflictError(f"network {name} has no free address left in its range", driver=DRIVER_NAME)

    @staticmethod
    def _release(network: libvirt.virNetwork, mac: str, ip: str) -> None:
        network.update(
            libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
            libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
            -1,
            DhcpHostElement(mac=mac, ip=ip).to_xml(),
            _update_flags(network),
        )

    def post(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        """Nothing to do after boot: libvirt binds a NIC's filter when it creates the tap device. The network
        is checked to be up, so a VM is not reported healthy on a dead network."""
        with self._using(host, f"check NIC {nic.mac} of {vm_uuid}") as connection:
            network = connection.networkLookupByName(nic.network)
            if not network.isActive():
                raise ConflictError(f"network {nic.network} is not active", driver=DRIVER_NAME)

    def clean(self, host: HostRef, vm_uuid: str, nic: NicDefinition) -> None:
        with self._using(host, f"clean NIC {nic.mac} of {vm_uuid}") as connection:
            network = connection.networkLookupByName(nic.network)
            document = ET.fromstring(network.XMLDesc(0))
            for host_entry in document.findall("./ip/dhcp/host"):
                if host_entry.get("mac", "").lower() == nic.mac.lower():
                    self._release(network, host_entry.get("mac", nic.mac), host_entry.get("ip", ""))
            combined, exists = combined_filter(connection, nic.security_groups, bits=self.nic_filter_bits)
            if combined is not None and exists and combined not in nic.security_groups:
                # Other NICs with the same groups may still use it: libvirt refuses then, which is fine.
                with ignoring(libvirt.VIR_ERR_NO_NWFILTER, libvirt.VIR_ERR_OPERATION_INVALID,
                              libvirt.VIR_ERR_OPERATION_FAILED, libvirt.VIR_ERR_NO_SUPPORT):  # fmt: skip
                    connection.nwfilterLookupByName(combined).undefine()

    # --- security groups ----------------------------------------------------------------------------------

    def update_sg(self, host: HostRef, group: SecurityGroupDefinition) -> None:
        with self._using(host, f"update security group {group.name}") as connection:
            # Defining under the same name and uuid replaces the rules, on running NICs too.
            handle = connection.nwfilterDefineXML(FilterElement.from_group(group).to_xml())
            if group.owner is not None:
                ledger.record(
                    connection, host.uri, ledger.Entry("filter", group.name, handle.UUIDString(), group.owner)
                )

    def delete_sg(self, host: HostRef, name: str) -> None:
        with self._using(host, f"delete security group {name}") as connection:
            connection.nwfilterLookupByName(name).undefine()
            ledger.forget(connection, host.uri, "filter", name)

    def monitor(self, host: HostRef) -> Mapping[str, NetworkStatus]:
        with self._using(host, "monitor networks") as connection:
            return {network.name(): network_status(network) for network in connection.listAllNetworks(0)}
