"""The sim's word for each host (``SimMonitoring.host_tokens``) and ``observing.host_tokens``: a host's word stays the
same while nothing its probe or listing reports changes, and changes with every write to one of its rows, whoever
makes it; the other hosts' words do not move. No words while a fault or latency is set, for a fleet file made again
at the same path, or when some host's driver has none."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nebctl.controller.observing import host_tokens
from nebctl.drivers.sim import Fault, FaultKind, SimFleet, SimMonitoring, SimVirtualization
from nebctl.drivers.states import VMLiveState
from nebctl.drivers.types import HostRef, VMDefinition

# "c" stands for the fleet's host "a" (its URI names it): it shares a's word.
HOSTS = [HostRef("a", "sim://a?cpus=8&memory=16Gi"), HostRef("b", "sim://b?cpus=4&memory=8Gi"), HostRef("c", "sim://a")]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[SimFleet]:
    with SimFleet(tmp_path / "sim.db", seed=1) as opened:
        virtualization = SimVirtualization(opened)
        for index in range(3):
            name = f"vm{index}"
            definition = VMDefinition(name=name, uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), vcpu=1, memory=1024**3)
            virtualization.deploy(HOSTS[index % 2], definition, start=True)
        yield opened


def _moved(before: dict[str, str], after: dict[str, str] | None) -> set[str]:
    assert after is not None and after.keys() == before.keys()
    return {name for name, word in after.items() if word != before[name]}


def test_a_hosts_word_moves_with_every_write_to_its_rows_and_no_other_hosts(fleet: SimFleet) -> None:
    monitoring = SimMonitoring(fleet)
    first = monitoring.host_tokens(HOSTS)
    assert first is not None and first["a"] == first["c"] != first["b"]
    monitoring.probe_many(HOSTS)  # reading changes nothing
    monitoring.list_many(HOSTS)
    assert monitoring.host_tokens(HOSTS) == first

    fleet.set_vm_state("vm1", VMLiveState.STOPPED)  # vm1 is on b (the drift API)
    second = monitoring.host_tokens(HOSTS)
    assert second is not None and _moved(first, second) == {"b"}

    with sqlite3.connect(fleet.path) as outside:  # another process, behind the driver's back
        outside.execute("UPDATE hosts SET memory = memory + 1 WHERE name = 'a'")
    third = monitoring.host_tokens(HOSTS)
    assert third is not None and _moved(second, third) == {"a", "c"}

    with sqlite3.connect(fleet.path) as outside:  # a VM moved from a to b: both hosts' rows moved
        outside.execute("UPDATE vms SET host = 'b' WHERE name = 'vm0'")
    fourth = monitoring.host_tokens(HOSTS)
    assert fourth is not None and _moved(third, fourth) == {"a", "b", "c"}

    SimVirtualization(fleet).undeploy(HOSTS[1], str(uuid.uuid5(uuid.NAMESPACE_DNS, "vm1")))
    assert _moved(fourth, monitoring.host_tokens(HOSTS)) == {"b"}


def test_no_words_while_a_fault_is_set_nor_for_a_file_made_again(fleet: SimFleet, tmp_path: Path) -> None:
    monitoring = SimMonitoring(fleet)
    before = monitoring.host_tokens(HOSTS)
    fleet.set_fault(Fault(action="monitoring.probe_vms", kind=FaultKind.TEMPORARY, probability=0.5))
    assert monitoring.host_tokens(HOSTS) is None
    fleet.clear_faults()
    assert monitoring.host_tokens(HOSTS) is not None

    path = tmp_path / "other.db"
    with SimFleet(path) as other:
        made = SimMonitoring(other).host_tokens(HOSTS)
    path.unlink()
    with SimFleet(path) as other:
        again = SimMonitoring(other).host_tokens(HOSTS)
    assert made is not None and again is not None and before is not None
    assert not set(made.values()) & set(again.values())  # each file its own identity


def _registry(monitorings: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(
        for_host=lambda ref, overrides=None: SimpleNamespace(monitoring=monitorings[ref.name]),
    )


def test_every_host_has_a_word_or_none_has(fleet: SimFleet) -> None:
    monitoring = SimMonitoring(fleet)
    hosts = {ref.name: (ref, None) for ref in HOSTS[:2]}
    words = host_tokens(hosts, _registry({"a": monitoring, "b": monitoring}))
    assert words is not None and words.keys() == {"a", "b"} and words["a"] != words["b"]
    assert host_tokens(hosts, _registry({"a": monitoring, "b": SimpleNamespace()})) is None  # b's driver has none
