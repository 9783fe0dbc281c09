"""The combined filter of a NIC with several security groups, by name, on one libvirt host.

libvirt takes one filterref per NIC, so a NIC with several groups references a filter that includes them all,
named after the set (``filters.nic_filter_name``: a digest, shortened). Two sets could name alike; a filter of
that name that includes another set is taken, so the set takes the next attempt's name, as nebctl's other
shortened identities do. What a set's filter is called follows from what the host holds, the same way on every
call: the first attempt's name whose filter includes exactly the set; when none does, the first attempt's name
that no filter has. ``LibvirtNetwork.pre`` defines it, the domain builder refers to it, ``clean`` removes it.
The filters are read and defined under one lock, so two NICs prepared at once cannot take one name.

Each host resolves names on its own, so a set's filter may be named otherwise on another host (only after a
collision there): a live migration gives the target the domain's definition with the target's names
(``retargeted``), as a cold one does by defining the domain there afresh.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import libvirt

from nebctl.drivers.errors import ConflictError
from nebctl.drivers.libvirt.common import DRIVER_NAME
from nebctl.drivers.libvirt.failures import error_code
from nebctl.drivers.libvirt.xmlbuild.filters import NIC_FILTER_BITS, FilterElement, nic_filter_name

# Names tried for one set before giving up: with 64 bits, a second one is already never needed.
ATTEMPTS = 64

LOCK = threading.Lock()


def combined_filter(
    connection: libvirt.virConnect, groups: tuple[str, ...], *, bits: int = NIC_FILTER_BITS, define: bool = False
) -> tuple[str | None, bool]:
    """The name of the filter a NIC with ``groups`` references on this host, and whether that filter exists
    (then it includes exactly the set). With ``define``, a missing one is defined. A NIC with one group (or none)
    references that group's own filter (or none): returned as it is, as existing."""
    first = nic_filter_name(groups, 0, bits)
    if first is None or first in groups:
        return first, True
    wanted = sorted(set(groups))
    with LOCK:
        try:
            existing = {handle.name() for handle in connection.listAllNWFilters(0)}
        except libvirt.libvirtError as error:
            if error_code(error) != libvirt.VIR_ERR_NO_SUPPORT or define:
                raise
            return first, False  # a hypervisor without filters (libvirt's test driver): only a name to refer to
        free = None
        for attempt in range(ATTEMPTS):
            name = nic_filter_name(groups, attempt, bits)
            assert name is not None
            if name not in existing:
                free = free or name
            elif _includes(connection, name) == wanted:
                return name, True
        if free is None:
            raise ConflictError(
                f"no free name for the filter combining {', '.join(wanted)}: {ATTEMPTS} names are other sets'",
                driver=DRIVER_NAME,
            )
        if define:
            connection.nwfilterDefineXML(FilterElement.combining(free, groups).to_xml())
        return free, define


def _includes(connection: libvirt.virConnect, name: str) -> list[str]:
    document = ET.fromstring(connection.nwfilterLookupByName(name).XMLDesc(0))
    return sorted(str(ref.get("filter")) for ref in document.findall("./filterref"))


def retargeted(xml: str, names: Sequence[str | None]) -> str | None:
    """``xml``, a domain's definition, with each NIC's filter reference set to ``names`` (by NIC, in order; a
    None leaves that NIC as it is); None when every reference already names it, so the definition can go as
    it is."""
    root = ET.fromstring(xml)
    changed = False
    for interface, name in zip(root.findall("./devices/interface"), names, strict=False):
        reference = interface.find("filterref")
        if reference is not None and name is not None and reference.get("filter") != name:
            reference.set("filter", name)
            changed = True
    return ET.tostring(root, encoding="unicode") if changed else None
