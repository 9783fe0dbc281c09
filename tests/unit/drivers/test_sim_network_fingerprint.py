"""The sim's networks as its inventory and its bulk listing fingerprint them, before and after
``drivers.sim.tampering.change_network`` gives them another bridge, MTU or DNS servers (what ``nebctl sim
change-network --bridge/--mtu/--dns`` does). The expected fingerprints are written out by hand."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from nebctl.drivers.sim import SimFleet, SimMonitoring
from nebctl.drivers.sim.networking import SimNetwork
from nebctl.drivers.sim.tampering import change_network
from nebctl.drivers.types import HostRef, NetworkDefinition

HOST = HostRef("kvm1", "sim://kvm1?cpus=4&memory=8Gi&disk=100Gi")
PLAN = {"cidr": "10.7.0.0/24", "gateway": "10.7.0.1", "range": "10.7.0.10-10.7.0.20"}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[SimFleet]:
    with SimFleet(tmp_path / "sim.db", seed=7) as opened:
        network = SimNetwork(opened)
        network.create(HOST, NetworkDefinition("uplink", "bridge", "10.7.0.0/24", "10.7.0.1", "10.7.0.10",
                                               "10.7.0.20", bridge="br0"))  # fmt: skip
        network.create(HOST, NetworkDefinition("lan", "nat", "10.7.0.0/24", "10.7.0.1", "10.7.0.10", "10.7.0.20",
                                               mtu=1500, dns=("10.7.0.1",)))  # fmt: skip
        yield opened


def listed(fleet: SimFleet) -> dict[str, Mapping[str, str] | None]:
    monitoring = SimMonitoring(fleet)
    found = {item.name: item.fingerprint for item in monitoring.inventory(HOST) if item.object == "network"}
    bulk = monitoring.list_many([HOST])
    assert bulk is not None
    assert {name: fp for (what, name), fp in bulk[HOST.name][1].items() if what == "network"} == found
    return found


def test_as_created(fleet: SimFleet) -> None:
    assert listed(fleet) == {
        "uplink": {"mode": "bridge", **PLAN, "bridge": "br0"},
        "lan": {"mode": "nat", **PLAN, "mtu": "1500", "dns": "10.7.0.1"},
    }


def test_changed_by_hand(fleet: SimFleet) -> None:
    change_network(fleet, HOST.name, "uplink", bridge="br1")
    change_network(fleet, HOST.name, "lan", mtu=None, dns=["1.1.1.1", "9.9.9.9"])
    assert listed(fleet) == {
        "uplink": {"mode": "bridge", **PLAN, "bridge": "br1"},
        "lan": {"mode": "nat", **PLAN, "mtu": "default", "dns": "1.1.1.1, 9.9.9.9"},
    }
    change_network(fleet, HOST.name, "lan", mtu=9000, dns=[])
    assert listed(fleet)["lan"] == {"mode": "nat", **PLAN, "mtu": "9000", "dns": "none"}
