"""Domain XML: the builder of a libvirt ``<domain>`` from a VM's definition, and its device elements.

``LibvirtVirtualization.deploy`` uses ``DomainElement.from_vm`` to turn a ``VMDefinition`` into the document
it defines. Disks refer to volumes by pool and name (``type='volume'``), so the same document works on every
host that has the datastore, whatever its path.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from nebctl.drivers.libvirt.xmlbuild.base import XMLBuilder, child, metadata
from nebctl.drivers.types import BootDefinition, Ownership, VMDefinition

KIB = 1024


@dataclass(frozen=True)
class DiskElement(XMLBuilder):
    """A virtio disk backed by a pool volume."""

    pool: str
    volume: str
    target: str  # vda, vdb...
    format: str = "qcow2"

    def build(self) -> ET.Element:
        disk = ET.Element("disk", {"type": "volume", "device": "disk"})
        child(disk, "driver", name="qemu", type_=self.format)
        child(disk, "source", pool=self.pool, volume=self.volume)
        child(disk, "target", dev=self.target, bus="virtio")
        return disk


@dataclass(frozen=True)
class CdromElement(XMLBuilder):
    """A read-only SATA CD-ROM backed by a pool volume: the cloud-init NoCloud seed."""

    pool: str
    volume: str
    target: str = "sda"

    def build(self) -> ET.Element:
        cdrom = ET.Element("disk", {"type": "volume", "device": "cdrom"})
        child(cdrom, "driver", name="qemu", type_="raw")
        child(cdrom, "source", pool=self.pool, volume=self.volume)
        child(cdrom, "target", dev=self.target, bus="sata")
        child(cdrom, "readonly")
        return cdrom


@dataclass(frozen=True)
class FilterRefElement(XMLBuilder):
    """A reference to a network filter (a security group) on a NIC."""

    filter: str

    def build(self) -> ET.Element:
        return ET.Element("filterref", {"filter": self.filter})


@dataclass(frozen=True)
class InterfaceElement(XMLBuilder):
    """A virtio NIC on a libvirt network with a fixed MAC. libvirt accepts one filterref per NIC, so several
    security groups are combined by a filter that references them all (see ``filters.nic_filter_name``)."""

    network: str
    mac: str
    filter: str | None = None

    def build(self) -> ET.Element:
        interface = ET.Element("interface", {"type": "network"})
        child(interface, "mac", address=self.mac)
        child(interface, "source", network=self.network)
        child(interface, "model", type_="virtio")
        if self.filter is not None:
            interface.append(FilterRefElement(self.filter).build())
        return interface


@dataclass(frozen=True)
class DomainElement(XMLBuilder):
    """A whole domain. ``domain_type`` is kvm, qemu (TCG) or test, chosen from the host's capabilities."""

    name: str
    uuid: str
    vcpu: int
    memory: int  # bytes
    domain_type: str = "kvm"
    arch: str = "x86_64"
    disks: tuple[DiskElement, ...] = ()
    cdroms: tuple[CdromElement, ...] = ()
    interfaces: tuple[InterfaceElement, ...] = ()
    owner: Ownership | None = None
    boot: BootDefinition | None = None  # direct kernel boot instead of the disks' boot loader

    @classmethod
    def from_vm(
        cls,
        vm: VMDefinition,
        *,
        domain_type: str,
        arch: str,
        seed: CdromElement | None = None,
        nic_filters: tuple[str | None, ...] | None = None,
    ) -> DomainElement:
        filters = nic_filters if nic_filters is not None else (None,) * len(vm.nics)
        return cls(
            name=vm.name,
            uuid=vm.uuid,
            vcpu=vm.vcpu,
            memory=vm.memory,
            domain_type=domain_type,
            arch=arch,
            disks=tuple(
                DiskElement(pool=disk.datastore, volume=disk.volume, target=disk_target(index), format=disk.format)
                for index, disk in enumerate(vm.disks)
            ),
            cdroms=(seed,) if seed is not None else (),
            interfaces=tuple(
                InterfaceElement(network=nic.network, mac=nic.mac, filter=filter_name)
                for nic, filter_name in zip(vm.nics, filters, strict=True)
            ),
            owner=vm.owner,
            boot=vm.boot,
        )

    def build(self) -> ET.Element:
        domain = ET.Element("domain", {"type": self.domain_type})
        child(domain, "name", self.name)
        child(domain, "uuid", self.uuid)
        metadata(domain, self.owner)
        # libvirt rounds memory to KiB; the controller's quantities are whole MiB in practice.
        child(domain, "memory", str(self.memory // KIB), unit="KiB")
        child(domain, "currentMemory", str(self.memory // KIB), unit="KiB")
        child(domain, "vcpu", str(self.vcpu), placement="static")
        os_element = child(domain, "os")
        child(os_element, "type", "hvm", arch=self.arch)
        if self.boot is not None:
            # QEMU loads the kernel itself (-kernel/-initrd/-append): no boot order applies.
            child(os_element, "kernel", self.boot.kernel)
            if self.boot.initrd is not None:
                child(os_element, "initrd", self.boot.initrd)
            if self.boot.cmdline is not None:
                child(os_element, "cmdline", self.boot.cmdline)
        else:
            child(os_element, "boot", dev="hd")
            if self.cdroms:
                child(os_element, "boot", dev="cdrom")
        features = child(domain, "features")
        child(features, "acpi")  # ACPI is what makes a graceful shutdown possible
        child(features, "apic")
        child(domain, "on_poweroff", "destroy")
        child(domain, "on_reboot", "restart")
        child(domain, "on_crash", "destroy")
        devices = child(domain, "devices")
        for device in (*self.disks, *self.cdroms, *self.interfaces):
            devices.append(device.build())
        child(devices, "serial", type_="pty")
        child(devices, "memballoon", model="virtio")  # balloon stats feed memory_used in probes
        return domain


def disk_target(index: int) -> str:
    """vda, vdb, ... vdz, vdaa: the guest device name of the index-th disk."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("a") + remainder) + letters
    return f"vd{letters}"
