"""The libvirt driver: the real backend for the virtualization, storage, network and monitoring families.

This package is the only place in nebctl that imports ``libvirt``. Each family is its own class, registered
under the name ``libvirt``; all of them share one connection per host URI (``Connections``), so building them
with no arguments is enough::

    from nebctl.drivers.libvirt import LibvirtVirtualization, LibvirtStorage, LibvirtNetwork, LibvirtMonitoring
    virt = LibvirtVirtualization()          # or LibvirtVirtualization(connections=Connections())
"""

from __future__ import annotations

from nebctl.drivers.libvirt.connections import Connections, default_connections
from nebctl.drivers.libvirt.monitoring import LibvirtMonitoring
from nebctl.drivers.libvirt.network import LibvirtNetwork
from nebctl.drivers.libvirt.storage import LibvirtStorage
from nebctl.drivers.libvirt.virtualization import LibvirtVirtualization

DRIVER_CLASSES: tuple[type[object], ...] = (LibvirtVirtualization, LibvirtStorage, LibvirtNetwork, LibvirtMonitoring)
"""Every family class of the libvirt driver; the registry imports it lazily, by this name."""

__all__ = [
    "DRIVER_CLASSES",
    "Connections",
    "LibvirtMonitoring",
    "LibvirtNetwork",
    "LibvirtStorage",
    "LibvirtVirtualization",
    "default_connections",
]
