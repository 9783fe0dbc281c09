"""Golden-file tests of the XML builders: each builder's document must equal the committed file.

Set NEBCTL_UPDATE_GOLDEN=1 to rewrite the files after an intended change, then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nebctl.drivers.libvirt.xmlbuild.base import OwnerElement, XMLBuilder
from nebctl.drivers.libvirt.xmlbuild.domains import CdromElement, DomainElement, disk_target
from nebctl.drivers.libvirt.xmlbuild.filters import FilterElement, filter_uuid, nic_filter_name
from nebctl.drivers.libvirt.xmlbuild.networks import DhcpHostElement, NetworkElement
from nebctl.drivers.libvirt.xmlbuild.storage import BackingStoreElement, PoolElement, VolumeElement
from nebctl.drivers.types import (
    BootDefinition,
    DiskAttachment,
    NetworkDefinition,
    NicDefinition,
    Ownership,
    SecurityGroupDefinition,
    SecurityRuleDefinition,
    VMDefinition,
)

GOLDEN = Path(__file__).parent / "golden"
OWNER = Ownership(stack="demo", kind="VirtualMachine", namespace="default", name="web-1")

VM = VMDefinition(
    name="demo-web-1",
    uuid="0b8e6c1e-3a55-5d1c-9a6f-1c1d5e0f0a01",
    vcpu=2,
    memory=512 * 1024**2,
    disks=(DiskAttachment(volume="demo-web-1-disk0", datastore="demo-images"),),
    nics=(
        NicDefinition(network="demo-lan", mac="52:54:00:aa:bb:01", ip="10.10.0.10", security_groups=("demo-ssh",)),
        NicDefinition(network="demo-lan", mac="52:54:00:aa:bb:02", security_groups=("demo-ssh", "demo-web")),
    ),
    owner=OWNER,
)

SSH = SecurityGroupDefinition(
    name="demo-ssh",
    rules=(
        SecurityRuleDefinition(direction="in", protocol="tcp", ports=("22", "8000-8080"), cidr="10.0.0.0/8"),
        SecurityRuleDefinition(direction="in", protocol="icmp"),
        SecurityRuleDefinition(direction="out", protocol="any"),
    ),
)


def network(mode: str, **extra: object) -> NetworkElement:
    definition = NetworkDefinition(
        name=f"demo-{mode}",
        mode=mode,
        cidr="10.10.0.0/24",
        gateway="10.10.0.1",
        range_first="10.10.0.100",
        range_last="10.10.0.200",
        owner=Ownership(stack="demo", kind="Network", namespace="default", name=mode),
        **extra,  # type: ignore[arg-type]
    )
    return NetworkElement.from_definition(definition)


CASES: dict[str, XMLBuilder] = {
    "domain-kvm.xml": DomainElement.from_vm(
        VM,
        domain_type="kvm",
        arch="x86_64",
        seed=CdromElement(pool="demo-images", volume="demo-web-1-cidata.iso"),
        nic_filters=tuple(nic_filter_name(nic.security_groups) for nic in VM.nics),
    ),
    # Direct kernel boot under TCG: the kernel, initrd and command line replace the boot order.
    "domain-direct-boot.xml": DomainElement.from_vm(
        VMDefinition(
            name="guest",
            uuid="0b8e6c1e-3a55-5d1c-9a6f-1c1d5e0f0a03",
            vcpu=1,
            memory=256 * 1024**2,
            disks=(DiskAttachment(volume="guest-disk0", datastore="demo-images"),),
            boot=BootDefinition(
                kernel="/var/lib/nebctl/images/debian-12-guest/vmlinuz",
                initrd="/var/lib/nebctl/images/debian-12-guest/initrd.img",
                cmdline="root=/dev/vda1 console=ttyS0",
            ),
        ),
        domain_type="qemu",
        arch="x86_64",
        seed=CdromElement(pool="demo-images", volume="guest-cidata.iso"),
    ),
    "domain-bare.xml": DomainElement(
        name="bare", uuid="0b8e6c1e-3a55-5d1c-9a6f-1c1d5e0f0a02", vcpu=1, memory=64 * 1024**2, domain_type="qemu"
    ),
    "network-nat.xml": network("nat", dns=("9.9.9.9",), mtu=9000),
    "network-isolated.xml": NetworkElement(
        **{**network("isolated").__dict__, "hosts": (DhcpHostElement(mac="52:54:00:aa:bb:01", ip="10.10.0.10"),)}
    ),
    "network-bridge.xml": network("bridge", bridge="br0"),
    "pool.xml": PoolElement(name="demo-images", path="/var/lib/nebctl/demo-images"),
    "volume-overlay.xml": VolumeElement(
        name="demo-web-1-disk0",
        capacity=20 * 1024**3,
        backing=BackingStoreElement(path="/var/lib/nebctl/demo-images/debian-12", format="qcow2"),
    ),
    "volume-blank-raw.xml": VolumeElement(name="scratch", capacity=1024**3, format="raw"),
    "filter-ssh.xml": FilterElement.from_group(SSH),
    "filter-nic.xml": FilterElement.combining("nebctl-nic-x", ("demo-web", "demo-ssh")),
    "owner.xml": OwnerElement(OWNER),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_builder_matches_golden_file(name: str) -> None:
    produced = CASES[name].to_xml()
    path = GOLDEN / name
    if os.environ.get("NEBCTL_UPDATE_GOLDEN") == "1":
        path.write_text(produced)
    assert produced == path.read_text(), f"{name} changed; review and rerun with NEBCTL_UPDATE_GOLDEN=1"


def test_owner_round_trips_through_a_document() -> None:
    document = CASES["domain-kvm.xml"].build()
    assert OwnerElement.parse(document) == OWNER
    assert OwnerElement.parse_text('<owner stack="s" kind="k" namespace="n" name="x"/>') == Ownership(
        "s", "k", "n", "x"
    )
    assert OwnerElement.parse_text("<other/>") is None


@pytest.mark.parametrize(("index", "target"), [(0, "vda"), (1, "vdb"), (25, "vdz"), (26, "vdaa"), (27, "vdab")])
def test_disk_targets(index: int, target: str) -> None:
    assert disk_target(index) == target


def test_nic_filter_names() -> None:
    assert nic_filter_name(()) is None
    assert nic_filter_name(("a", "a")) == "a"
    assert nic_filter_name(("b", "a")) == nic_filter_name(("a", "b"))
    assert (nic_filter_name(("a", "b")) or "").startswith("nebctl-nic-")
    assert filter_uuid("x") == filter_uuid("x") != filter_uuid("y")


def test_unknown_network_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown network mode"):
        network("route").build()
