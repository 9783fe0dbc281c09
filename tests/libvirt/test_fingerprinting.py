"""The fingerprints of libvirt XML (``drivers.libvirt.fingerprinting``), against hand-written expectations.

Two sources of documents: what nebctl's own builders write (so a network, a filter or a pool as created reads
back as its spec), and documents as ``virsh`` shows them after an edit by hand (another DHCP range, a netmask
instead of a prefix, an isolated network's ``forward mode='none'``, a filter whose rule was made a drop).
"""

from __future__ import annotations

import pytest

from nebctl.drivers.libvirt.fingerprinting import filter_fingerprint, network_fingerprint, pool_fingerprint
from nebctl.drivers.libvirt.xmlbuild.filters import FilterElement
from nebctl.drivers.libvirt.xmlbuild.networks import NetworkElement
from nebctl.drivers.libvirt.xmlbuild.storage import PoolElement
from nebctl.drivers.types import NetworkDefinition, SecurityGroupDefinition, SecurityRuleDefinition


def _network(mode: str, bridge: str | None = None, mtu: int | None = None, dns: tuple[str, ...] = ()) -> str:
    definition = NetworkDefinition(
        "lab", mode, "10.5.0.0/24", "10.5.0.1", "10.5.0.100", "10.5.0.200", bridge=bridge, mtu=mtu, dns=dns
    )
    return NetworkElement.from_definition(definition).to_xml()


PLAN = {"cidr": "10.5.0.0/24", "gateway": "10.5.0.1", "range": "10.5.0.100-10.5.0.200"}
UNSAID = {"mtu": "default", "dns": "none"}  # no <mtu>, no <dns>: what libvirt holds when neither was declared


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (_network("nat"), {"mode": "nat", **PLAN, **UNSAID}),
        (_network("isolated"), {"mode": "isolated", **PLAN, **UNSAID}),
        (
            _network("nat", mtu=9000, dns=("10.5.0.2", "1.1.1.1")),
            {"mode": "nat", **PLAN, "mtu": "9000", "dns": "10.5.0.2, 1.1.1.1"},
        ),
        # Addressing, MTU and DNS of a bridge-mode network are the LAN's: only the bridge is the driver's.
        (_network("bridge", "br0"), {"mode": "bridge", "bridge": "br0"}),
        (_network("bridge", "br0", mtu=1400, dns=("10.5.0.2",)), {"mode": "bridge", "bridge": "br0"}),
        (
            "<network><name>lab</name><forward mode='none'/><ip address='10.9.0.254' prefix='16'>"
            "<dhcp><range start='10.9.1.1' end='10.9.1.9'/></dhcp></ip></network>",
            {"mode": "isolated", "cidr": "10.9.0.0/16", "gateway": "10.9.0.254", "range": "10.9.1.1-10.9.1.9"} | UNSAID,
        ),
        (
            "<network><name>lab</name><forward mode='route'/>"
            "<ip address='10.5.0.1' netmask='255.255.255.0'/></network>",
            {"mode": "route", "cidr": "10.5.0.0/24", "gateway": "10.5.0.1", "range": "none"} | UNSAID,
        ),
        (  # edited by hand: an MTU and a forwarder given, one of them for a domain only
            "<network><name>lab</name><bridge name='virbr7'/><mtu size='1400'/><dns>"
            "<forwarder addr='8.8.8.8'/><forwarder domain='corp' addr='10.0.0.53'/><forwarder domain='x'/></dns>"
            "<ip address='10.5.0.1' prefix='24'/></network>",
            {"mode": "isolated", "cidr": "10.5.0.0/24", "gateway": "10.5.0.1", "range": "none", "mtu": "1400"}
            | {"dns": "8.8.8.8, 10.0.0.53"},
        ),
    ],
)
def test_network_fingerprint(xml: str, expected: dict[str, str]) -> None:
    assert network_fingerprint(xml) == expected


RULES = (
    SecurityRuleDefinition("in", "tcp", ("22", "8000-8080"), "10.5.0.0/24"),
    SecurityRuleDefinition("in", "icmp"),
    SecurityRuleDefinition("out", "any"),
    SecurityRuleDefinition("out", "udp", ("67",)),  # the same as the DHCP rule every filter has: kept once
)


def test_a_filter_as_built_reads_back_as_its_rules() -> None:
    xml = FilterElement.from_group(SecurityGroupDefinition("nebctl-sg-web", RULES)).to_xml()
    assert filter_fingerprint(xml) == {
        "rules": "in icmp all 0.0.0.0/0, in tcp 22 10.5.0.0/24, in tcp 8000-8080 10.5.0.0/24, "
        "out any all 0.0.0.0/0, out udp 67 0.0.0.0/0"
    }


def test_a_filter_edited_by_hand() -> None:
    xml = (
        "<filter name='nebctl-sg-web' chain='root'><uuid>0f5d1c46-0000-4000-8000-000000000000</uuid>"
        "<rule action='accept' direction='out' priority='500'><udp dstportstart='67' dstportend='67'/></rule>"
        "<rule action='accept' direction='in' priority='500'><udp dstportstart='68' dstportend='68'/></rule>"
        "<rule action='drop' direction='in' priority='500'><tcp srcipaddr='10.5.0.0' srcipmask='24' "
        "dstportstart='22' dstportend='22'/></rule>"
        "<rule action='accept' direction='out' priority='500'><tcp dstipaddr='192.168.1.0' dstipmask='24'/></rule>"
        "<rule action='drop' direction='inout' priority='1000'><all/></rule></filter>"
    )
    assert filter_fingerprint(xml) == {"rules": "in tcp 22 10.5.0.0/24 (drop), out tcp all 192.168.1.0/24"}


def test_a_filter_without_rules() -> None:
    xml = FilterElement.from_group(SecurityGroupDefinition("nebctl-sg-none", ())).to_xml()
    assert filter_fingerprint(xml) == {"rules": "none"}


def test_pool_fingerprint() -> None:
    assert pool_fingerprint(PoolElement("local", "/srv/pools/local").to_xml()) == {
        "type": "dir",
        "path": "/srv/pools/local",
    }
    edited = "<pool type='netfs'><name>local</name><target><path>/mnt/elsewhere/</path></target></pool>"
    assert pool_fingerprint(edited) == {"type": "netfs", "path": "/mnt/elsewhere"}
