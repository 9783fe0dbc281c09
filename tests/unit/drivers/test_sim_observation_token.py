"""The sim's observation token (``SimMonitoring.observation_token``) and ``observing.observation_token``: the word
stays the same while nothing a probe or a listing reports changes, and changes with every write to the fleet,
whoever makes it (the driver, the drift API, a plain sqlite3 connection); no word while a fault or latency is set,
for a fleet file made again at the same path, or when some host's driver has no token."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nebctl.controller.observing import observation_token, observe
from nebctl.drivers.sim import Fault, FaultKind, SimFleet, SimMonitoring, SimVirtualization
from nebctl.drivers.states import VMLiveState
from nebctl.drivers.types import HostRef, VMDefinition

HOSTS = [HostRef("a", "sim://a?cpus=8&memory=16Gi"), HostRef("b", "sim://b?cpus=4&memory=8Gi")]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[SimFleet]:
    with SimFleet(tmp_path / "sim.db", seed=1) as opened:
        virtualization = SimVirtualization(opened)
        for index in range(3):
            name = f"vm{index}"
            definition = VMDefinition(name=name, uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), vcpu=1, memory=1024**3)
            virtualization.deploy(HOSTS[index % 2], definition, start=True)
        yield opened


def _registry(monitoring: Any) -> SimpleNamespace:
    return SimpleNamespace(for_host=lambda ref, overrides=None: SimpleNamespace(monitoring=monitoring))


def _hosts(refs: list[HostRef]) -> dict[str, tuple[HostRef, Any]]:
    return {ref.name: (ref, None) for ref in refs}


def test_the_word_is_steady_while_nothing_changes_and_moves_with_every_writer(fleet: SimFleet) -> None:
    monitoring = SimMonitoring(fleet)
    first = monitoring.observation_token(HOSTS)
    assert first is not None
    monitoring.probe_many(HOSTS)  # reading changes nothing
    assert monitoring.observation_token(HOSTS) == first

    fleet.set_vm_state("vm1", VMLiveState.STOPPED)  # the drift API
    second = monitoring.observation_token(HOSTS)
    assert second not in (None, first)

    with sqlite3.connect(fleet.path) as outside:  # another process, behind the driver's back
        outside.execute("UPDATE hosts SET memory = memory + 1 WHERE name = 'a'")
    third = monitoring.observation_token(HOSTS)
    assert third not in (None, first, second)

    fleet.host_down("b")
    assert monitoring.observation_token(HOSTS) not in (None, first, second, third)


def test_no_word_while_a_fault_is_set(fleet: SimFleet) -> None:
    monitoring = SimMonitoring(fleet)
    fleet.set_fault(Fault(action="monitoring.probe_vms", kind=FaultKind.TEMPORARY, probability=0.5))
    assert monitoring.observation_token(HOSTS) is None
    fleet.clear_faults()
    assert monitoring.observation_token(HOSTS) is not None


def test_a_fleet_file_made_again_has_another_word(tmp_path: Path) -> None:
    path = tmp_path / "sim.db"
    with SimFleet(path) as fleet:
        before = SimMonitoring(fleet).observation_token(HOSTS)
    path.unlink()
    with SimFleet(path) as fleet:
        assert SimMonitoring(fleet).observation_token(HOSTS) != before


def test_observe_gives_the_word_only_when_every_driver_has_one_and_it_held(fleet: SimFleet) -> None:
    monitoring = SimMonitoring(fleet)
    live = observe(_hosts(HOSTS), _registry(monitoring), parallelism=1)
    assert live.token is not None and live.token == observation_token(_hosts(HOSTS), _registry(monitoring))

    class Wordless:
        """A monitoring driver with no token (as libvirt's is today): it answers like the sim otherwise."""

        def probe_host(self, host: HostRef) -> Any:
            return monitoring.probe_host(host)

        def probe_vms(self, host: HostRef) -> Any:
            return monitoring.probe_vms(host)

    assert observe(_hosts(HOSTS), _registry(Wordless()), parallelism=1).token is None
    assert observe(_hosts(HOSTS), _registry(monitoring), parallelism=1, custom=lambda ref: {}).token is None

    class Moving(SimMonitoring):
        """The sim, with the fleet written while its hosts are probed: the view may mix two states."""

        def probe_vms(self, host: HostRef) -> Any:
            found = super().probe_vms(host)
            self.fleet.set_vm_state("vm0", VMLiveState.STOPPED if host.name == "a" else VMLiveState.RUNNING)
            return found

        def probe_many(self, hosts: Sequence[HostRef]) -> None:
            return None  # declined: host by host, so that the write falls between two probes

    assert observe(_hosts(HOSTS), _registry(Moving(fleet)), parallelism=1).token is None
