"""Storage XML: dir pools and their volumes (blank, qcow2 overlays on a backing file, copies, uploads).

Used by ``LibvirtStorage``. Libvirt's pool and volume documents have no ``<metadata>``, so they carry no
ownership element: a pool's and an image volume's ownership is in the host's ownership ledger
(``libvirt.ledger``), and a VM's disk is its domain's (the deterministic volume names say which).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from nebctl.drivers.libvirt.xmlbuild.base import XMLBuilder, child


@dataclass(frozen=True)
class PoolElement(XMLBuilder):
    """A directory pool: libvirt creates the directory on ``build`` and lists its files as volumes."""

    name: str
    path: str

    def build(self) -> ET.Element:
        pool = ET.Element("pool", {"type": "dir"})
        child(pool, "name", self.name)
        target = child(pool, "target")
        child(target, "path", self.path)
        return pool


@dataclass(frozen=True)
class BackingStoreElement(XMLBuilder):
    path: str
    format: str

    def build(self) -> ET.Element:
        backing = ET.Element("backingStore")
        child(backing, "path", self.path)
        child(backing, "format", type_=self.format)
        return backing


@dataclass(frozen=True)
class VolumeElement(XMLBuilder):
    """A volume of ``capacity`` bytes; with ``backing`` it is a qcow2 overlay of that file."""

    name: str
    capacity: int
    format: str = "qcow2"
    allocation: int = 0
    backing: BackingStoreElement | None = None

    def build(self) -> ET.Element:
        volume = ET.Element("volume")
        child(volume, "name", self.name)
        child(volume, "capacity", str(self.capacity), unit="bytes")
        child(volume, "allocation", str(self.allocation), unit="bytes")
        target = child(volume, "target")
        child(target, "format", type_=self.format)
        if self.backing is not None:
            volume.append(self.backing.build())
        return volume
