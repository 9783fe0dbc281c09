"""Writing a nebctl object's ownership again on libvirt, the object untouched: the monitoring driver's ``own``.

The planner asks for it where a change only alters what the ownership carries (a resource's labels or
annotations), so that ``nebctl recover`` rebuilds what was last applied (docs/ownership.md). A domain's ownership
is its ``<metadata>`` element, replaced live and in its persistent definition (``virDomainSetMetadata``);
pools, image volumes and filters have theirs in the host's ownership ledger (``ledger.restamp``). A network's
is in its XML, which libvirt (before 9.7) can only redefine for its next start: that is refused
(``CapabilityError``), and the network keeps the ownership it was made with; so is an object whose ledger entry
is missing (a hypervisor without nwfilters keeps no ledger).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from nebctl.drivers.errors import CapabilityError
from nebctl.drivers.libvirt import ledger
from nebctl.drivers.libvirt.common import DRIVER_NAME
from nebctl.drivers.libvirt.xmlbuild.base import OWNER_NAMESPACE, OwnerElement
from nebctl.drivers.types import Ownership

# The prefix the owner element takes in a domain's <metadata> (any prefix reads: the namespace decides).
PREFIX = "nebctl"


def own(connection: libvirt.virConnect, uri: str, what: str, name: str, *, owner: Ownership, pool: str = "") -> None:
    """Write ``owner`` on the object (``what``, ``name``) as ``inventory`` lists it, or on the domain whose UUID
    is ``name`` (``what`` "vm")."""
    if what == "vm":
        domain = connection.lookupByUUIDString(name)
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if domain.isActive():
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, _bare(owner), PREFIX, OWNER_NAMESPACE, flags)
        return
    if what in ledger.OBJECTS:
        if not ledger.restamp(connection, uri, what, name, pool=pool, owner=owner):
            # No entry to rewrite (a hypervisor without nwfilters keeps none, an older nebctl wrote none): the
            # next definition of the object writes one.
            raise CapabilityError(
                f"{what} {name} has no ownership entry on this host to write again", driver=DRIVER_NAME
            )
        return
    raise CapabilityError(f"the ownership of a libvirt {what} cannot be written again in place", driver=DRIVER_NAME)


def _bare(owner: Ownership) -> str:
    """The owner element without its namespace: libvirt puts the element it is given in the namespace named
    to ``setMetadata``."""
    element = OwnerElement(owner).build()
    for node in element.iter():
        node.tag = node.tag.rpartition("}")[2]
    return ET.tostring(element, encoding="unicode")
