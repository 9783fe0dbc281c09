"""The exec driver's ``list`` program: each object's ``attributes`` become its fingerprint in the spec's terms
(docs/ownership.md), and a wrong one is a permanent error naming the program and the object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nebctl.drivers import ownership
from nebctl.drivers.errors import PermanentError
from nebctl.drivers.exec import ExecMonitoring
from nebctl.drivers.types import HostRef, Ownership

HOST = HostRef("node1", "exec://fake")
OWNER = ownership.to_document(Ownership("demo", "Network", "default", "lan"))


def listing(tmp_path: Path, objects: list[dict[str, Any]]) -> ExecMonitoring:
    path = tmp_path / "monitoring" / "fake" / "list"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(objects)}\nEOF\n")
    path.chmod(0o755)
    return ExecMonitoring(driver_dir=tmp_path, program_set="fake")


def test_attributes_become_fingerprints(tmp_path: Path) -> None:
    objects = [
        {"object": "network", "name": "lan", "owner": OWNER,
         "attributes": {"mode": "nat", "cidr": "10.1.2.3/24", "gateway": "10.1.2.1", "range": "10.1.2.10-10.1.2.20"}},
        {"object": "filter", "name": "nebctl-sg-web", "owner": OWNER,
         "attributes": {"rules": [{"direction": "in", "protocol": "tcp", "ports": ["443", "22"]},
                                  {"direction": "out", "protocol": "any", "cidr": "10.0.0.0/8"}]}},
        {"object": "network", "name": "jumbo", "owner": OWNER,
         "attributes": {"mode": "isolated", "mtu": 9000, "dns": ["10.1.2.2", "9.9.9.9"]}},
        {"object": "network", "name": "plain", "owner": OWNER, "attributes": {"mtu": None, "dns": []}},
        {"object": "network", "name": "uplink", "owner": OWNER, "attributes": {"mode": "bridge", "bridge": "br0"}},
        {"object": "pool", "name": "local", "owner": OWNER, "attributes": {"path": "/srv/local/"}},
        {"object": "volume", "name": "image-debian", "owner": OWNER,
         "attributes": {"format": "raw", "size": 3 * 1024**3}},
        {"object": "volume", "name": "disk-0", "owner": OWNER},
    ]  # fmt: skip
    listed = {item.name: item.fingerprint for item in listing(tmp_path, objects).inventory(HOST)}
    assert listed == {
        "lan": {"mode": "nat", "cidr": "10.1.2.0/24", "gateway": "10.1.2.1", "range": "10.1.2.10-10.1.2.20"},
        "jumbo": {"mode": "isolated", "mtu": "9000", "dns": "10.1.2.2, 9.9.9.9"},
        "plain": {"mtu": "default", "dns": "none"},  # null and []: the driver's default MTU, no DNS server
        "uplink": {"mode": "bridge", "bridge": "br0"},
        "nebctl-sg-web": {"rules": "in tcp 22 0.0.0.0/0, in tcp 443 0.0.0.0/0, out any all 10.0.0.0/8"},
        "local": {"path": "/srv/local"},  # only what the program gave
        "image-debian": {"format": "raw", "size": "3Gi"},
        "disk-0": None,  # no attributes: judged by its presence
    }


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ({"object": "network", "attributes": {"cidr": 24}}, "cidr: expected a string, got 24"),
        ({"object": "network", "attributes": {"colour": "blue"}}, "a network has no attribute colour"),
        ({"object": "volume", "attributes": {"size": "2Gi"}}, "size: expected a number of bytes"),
        ({"object": "network", "attributes": {"mtu": "9000"}}, "mtu: expected a number of bytes or null"),
        ({"object": "network", "attributes": {"dns": "9.9.9.9"}}, "dns: expected a list of addresses"),
        ({"object": "filter", "attributes": {"rules": "allow all"}}, "rules: expected a list of rules"),
        ({"object": "pool", "attributes": ["dir"]}, "attributes: expected an object"),
    ],
)
def test_bad_attributes_are_permanent_errors_naming_the_object(
    tmp_path: Path, item: dict[str, Any], error: str
) -> None:
    with pytest.raises(PermanentError) as raised:
        listing(tmp_path, [{"name": "x", "owner": OWNER, **item}]).inventory(HOST)
    assert "list answered a bad object" in str(raised.value)
    assert error in str(raised.value)
