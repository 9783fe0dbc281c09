"""The sim's observation token (``SimMonitoring.observation_token``) and ``observing.observation_token``: the word
stays the same while nothing a probe or a listing reports changes, and changes with every write to the fleet,
whoever makes it (the driver, the drift API, a plain sqlite3 connection); no word while a fault or latency is set,
for a fleet file made again at the same path, or when some host's driver has no token.

The sim's word for each host (``SimMonitoring.host_tokens``) and ``observing.host_tokens`` likewise, host by host: a
host's word changes with every write to one of its rows, and no other host's does."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nebctl.controller.observing import host_tokens, observation_token, observe
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
    assert live.host_tokens is not None and live.host_tokens == host_tokens(_hosts(HOSTS), _registry(monitoring))

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

    moving = observe(_hosts(HOSTS), _registry(Moving(fleet)), parallelism=1)
    assert moving.token is None and moving.host_tokens is None


# --- each host's word ------------------------------------------------------------------------------------------

# "c" stands for the fleet's host "a" (its URI names it): it shares a's word.
WORDED = [*HOSTS, HostRef("c", "sim://a")]


def _moved(before: dict[str, str], after: dict[str, str] | None) -> set[str]:
    assert after is not None and after.keys() == before.keys()
    return {name for name, word in after.items() if word != before[name]}


def test_a_hosts_word_moves_with_every_write_to_its_rows_and_no_other_hosts(fleet: SimFleet) -> None:
    monitoring = SimMonitoring(fleet)
    first = monitoring.host_tokens(WORDED)
    assert first is not None and first["a"] == first["c"] != first["b"]
    monitoring.probe_many(HOSTS)  # reading changes nothing
    monitoring.list_many(HOSTS)
    assert monitoring.host_tokens(WORDED) == first

    fleet.set_vm_state("vm1", VMLiveState.STOPPED)  # vm1 is on b (the drift API)
    second = monitoring.host_tokens(WORDED)
    assert second is not None and _moved(first, second) == {"b"}

    with sqlite3.connect(fleet.path) as outside:  # another process, behind the driver's back
        outside.execute("UPDATE hosts SET memory = memory + 1 WHERE name = 'a'")
    third = monitoring.host_tokens(WORDED)
    assert third is not None and _moved(second, third) == {"a", "c"}

    with sqlite3.connect(fleet.path) as outside:  # a VM moved from a to b: both hosts' rows moved
        outside.execute("UPDATE vms SET host = 'b' WHERE name = 'vm0'")
    fourth = monitoring.host_tokens(WORDED)
    assert fourth is not None and _moved(third, fourth) == {"a", "b", "c"}

    SimVirtualization(fleet).undeploy(HOSTS[1], str(uuid.uuid5(uuid.NAMESPACE_DNS, "vm1")))
    assert _moved(fourth, monitoring.host_tokens(WORDED)) == {"b"}


def test_no_words_while_a_fault_is_set_nor_for_a_file_made_again(fleet: SimFleet, tmp_path: Path) -> None:
    monitoring = SimMonitoring(fleet)
    before = monitoring.host_tokens(WORDED)
    fleet.set_fault(Fault(action="monitoring.probe_vms", kind=FaultKind.TEMPORARY, probability=0.5))
    assert monitoring.host_tokens(WORDED) is None
    fleet.clear_faults()
    assert monitoring.host_tokens(WORDED) is not None

    path = tmp_path / "other.db"
    with SimFleet(path) as other:
        made = SimMonitoring(other).host_tokens(WORDED)
    path.unlink()
    with SimFleet(path) as other:
        again = SimMonitoring(other).host_tokens(WORDED)
    assert made is not None and again is not None and before is not None
    assert not set(made.values()) & set(again.values())  # each file its own identity


def _registry_of(monitorings: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(
        for_host=lambda ref, overrides=None: SimpleNamespace(monitoring=monitorings[ref.name]),
    )


def test_every_host_has_a_word_or_none_has(fleet: SimFleet) -> None:
    monitoring = SimMonitoring(fleet)
    hosts = {ref.name: (ref, None) for ref in HOSTS}
    words = host_tokens(hosts, _registry_of({"a": monitoring, "b": monitoring}))
    assert words is not None and words.keys() == {"a", "b"} and words["a"] != words["b"]
    assert host_tokens(hosts, _registry_of({"a": monitoring, "b": SimpleNamespace()})) is None  # b's driver has none
