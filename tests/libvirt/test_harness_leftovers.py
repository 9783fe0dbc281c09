"""The test harness's sweep of what killed test sessions left on a daemon (tests/support/libvirtd.py), on
libvirt's in-process test hypervisor: every domain, network and pool goes, their volumes with them, and only
what a fresh libvirt defines itself stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.libvirt.contract_drivers import NODE_XML
from tests.support.libvirtd import remove_leftovers

libvirt = pytest.importorskip("libvirt")

DOMAIN = "<domain type='test'><name>{name}</name><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
NETWORK = "<network><name>{name}</name><ip address='10.{octet}.0.1' netmask='255.255.255.0'/></network>"
POOL = "<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"
VOLUME = "<volume><name>disk0</name><capacity>1048576</capacity></volume>"


def test_leftovers_go_and_the_stock_objects_stay(tmp_path: Path) -> None:
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    connection = libvirt.open(f"test://{node}")
    try:
        connection.defineXML(DOMAIN.format(name="e2e1-web-1")).create()  # running
        connection.defineXML(DOMAIN.format(name="e2e1-web-1~1"))  # defined only
        for octet, name in ((7, "default"), (8, "e2e1-lab")):
            connection.networkDefineXML(NETWORK.format(name=name, octet=octet)).create()
        for name in ("default", "e2e1-images"):
            (tmp_path / name).mkdir()
            pool = connection.storagePoolDefineXML(POOL.format(name=name, path=tmp_path / name))
            pool.create()
        connection.storagePoolLookupByName("e2e1-images").createXML(VOLUME, 0)

        removed = remove_leftovers(connection)

        assert sorted(removed) == [
            "domain e2e1-web-1", "domain e2e1-web-1~1", "network e2e1-lab", "pool e2e1-images",
        ]  # fmt: skip
        assert connection.listAllDomains(0) == []
        assert [n.name() for n in connection.listAllNetworks(0)] == ["default"]
        assert [p.name() for p in connection.listAllStoragePools(0)] == ["default"]
        assert remove_leftovers(connection) == []  # a second sweep finds nothing
    finally:
        connection.close()
