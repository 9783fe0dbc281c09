"""The sim's bulk probe (``SimMonitoring.probe_many``) answers for many hosts exactly what ``probe_host`` and
``probe_vms`` answer host by host, and ``observing.observe`` uses it, falling back to one probe per host when the
sim declines (a latency or fault is set, which each host must suffer on its own)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nebctl.controller.observing import observe
from nebctl.drivers.sim import Fault, FaultKind, SimFleet, SimMonitoring, SimVirtualization
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostRef, VMDefinition

HOSTS = [
    HostRef("a", "sim://a?cpus=8&memory=16Gi&disk=100Gi"),
    HostRef("b", "sim://b?cpus=4&memory=8Gi&disk=50Gi"),
    HostRef("down", "sim://down"),
    HostRef("empty", "sim://empty?cpus=2"),
    HostRef("alias", "sim://a?cpus=8&memory=16Gi&disk=100Gi"),  # a second name for fleet host a
]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[SimFleet]:
    with SimFleet(tmp_path / "sim.db", clock=lambda: 1_000_000.0, seed=3) as opened:
        virtualization = SimVirtualization(opened)
        for index in range(7):
            host = HOSTS[index % 2]
            name = f"vm{index}"
            definition = VMDefinition(name=name, uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), vcpu=1 + index % 3,
                                      memory=(index + 1) * 1024**3)  # fmt: skip
            virtualization.deploy(host, definition, start=index != 3)
        opened.set_vm_state("vm5", VMLiveState.SUSPENDED)
        SimMonitoring(opened).probe_host(HOSTS[2])  # seen once, then down
        opened.host_down("down", reason="cable pulled")
        with opened.write() as connection:
            for host_name, allocation in (("a", 5 * 1024**3), ("a", 2 * 1024**3), ("b", 1024**3)):
                connection.execute(
                    "INSERT INTO volumes (host, datastore, name, path, capacity, allocation, format) "
                    "VALUES (?, 'local', ?, '/x', ?, ?, 'qcow2')",
                    (host_name, f"v{allocation}", allocation, allocation),
                )
        yield opened


def one_by_one(monitoring: SimMonitoring, ref: HostRef) -> tuple[Any, Any]:
    probe = monitoring.probe_host(ref)
    return probe, ([] if probe.state is HostLiveState.ERROR else list(monitoring.probe_vms(ref)))


def test_the_bulk_probe_answers_what_each_host_answers(fleet: SimFleet) -> None:
    monitoring = SimMonitoring(fleet)
    found = monitoring.probe_many(HOSTS)
    assert found is not None
    assert {name: (probe, list(vms)) for name, (probe, vms) in found.items()} == {
        ref.name: one_by_one(monitoring, ref) for ref in HOSTS
    }
    # The figures themselves, from the set-up above: host a holds the even VMs, b the odd ones.
    probe_a, vms_a = found["a"]
    assert [vm.name for vm in vms_a] == ["vm0", "vm2", "vm4", "vm6"]
    assert probe_a.free_memory == 16 * 1024**3 - (1 + 3 + 5 + 7) * 1024**3
    assert probe_a.disk_free == 100 * 1024**3 - 7 * 1024**3
    probe_b, vms_b = found["b"]
    assert [(vm.name, vm.state) for vm in vms_b] == [
        ("vm1", VMLiveState.RUNNING),
        ("vm3", VMLiveState.STOPPED),
        ("vm5", VMLiveState.SUSPENDED),
    ]
    assert probe_b.free_memory == 8 * 1024**3 - (2 + 6) * 1024**3  # running and suspended VMs hold memory
    assert found["down"][0].state is HostLiveState.ERROR
    assert found["down"][0].error == "host does not answer: cable pulled"
    assert found["empty"][0].cpus == 2 and found["empty"][1] == []


def test_the_bulk_host_probe_answers_what_each_host_answers_without_reading_owners(fleet: SimFleet) -> None:
    monitoring = SimMonitoring(fleet)
    with fleet.write() as connection:  # an ownership no probe could parse: the hosts' figures never read it
        connection.execute("UPDATE vms SET owner = '{not json'")
    found = monitoring.probe_hosts(HOSTS)
    assert found == {ref.name: monitoring.probe_host(ref) for ref in HOSTS}
    assert found["a"].free_memory == 16 * 1024**3 - (1 + 3 + 5 + 7) * 1024**3  # as the bulk probe's, above
    assert found["down"].error == "host does not answer: cable pulled"
    fleet.set_fault(Fault(action="monitoring.probe_host", kind=FaultKind.TEMPORARY, probability=0.5))
    assert monitoring.probe_hosts(HOSTS) is None  # each host must then suffer the fault on its own


def test_a_host_first_seen_by_the_bulk_probe_is_created_as_its_uri_says(fleet: SimFleet) -> None:
    new = HostRef("new", "sim://new?cpus=6&memory=2Gi&disk=10Gi")
    found = SimMonitoring(fleet).probe_many([HOSTS[0], new])
    assert found is not None
    assert (found["new"][0].cpus, found["new"][0].memory, found["new"][0].disk_total) == (6, 2 * 1024**3, 10 * 1024**3)
    assert fleet.store.read().execute("SELECT cpus FROM hosts WHERE name = 'new'").fetchone() == (6,)


class Registry:
    """The driver lookup of ``observe``: every host to the one sim monitoring driver (real, on the fleet file)."""

    def __init__(self, monitoring: Any) -> None:
        self.monitoring = monitoring

    def for_host(self, host: HostRef, overrides: Any = None) -> Any:
        return SimpleNamespace(monitoring=self.monitoring)

    def get(self, family: Any, reference: str) -> Any:
        raise AssertionError("not used")


class HostByHost:
    """The sim's monitoring without its bulk probe: what ``observe`` did before drivers had one."""

    def __init__(self, monitoring: SimMonitoring) -> None:
        self.probe_host = monitoring.probe_host
        self.probe_vms = monitoring.probe_vms


def hosts() -> dict[str, tuple[HostRef, Any]]:
    return {ref.name: (ref, None) for ref in HOSTS}


@pytest.mark.parametrize("parallelism", [1, 8])
def test_observe_with_the_bulk_probe_sees_what_it_sees_host_by_host(fleet: SimFleet, parallelism: int) -> None:
    monitoring = SimMonitoring(fleet)
    calls: list[int] = []
    probe_many = monitoring.probe_many

    def counted(refs: Any) -> Any:
        calls.append(len(refs))
        return probe_many(refs)

    monitoring.probe_many = counted  # type: ignore[method-assign,assignment]
    bulk = observe(hosts(), Registry(monitoring), parallelism=parallelism)
    assert calls == [len(HOSTS)]  # one call for every host
    assert bulk == observe(hosts(), Registry(HostByHost(SimMonitoring(fleet))), parallelism=parallelism)


def test_custom_attributes_are_added_to_bulk_probes(fleet: SimFleet) -> None:
    live = observe(hosts(), Registry(SimMonitoring(fleet)), parallelism=4, custom=lambda ref: {"rack": ref.name})
    assert live.hosts["a"].custom == {"sim": "true", "vms": "4", "rack": "a"}
    assert "rack" not in live.hosts["down"].custom


def test_with_a_fault_set_each_host_is_probed_on_its_own_and_suffers_it(fleet: SimFleet) -> None:
    fleet.set_fault(Fault("monitoring.probe_vms", FaultKind.PERMANENT, host="b", message="agent crashed"))
    assert SimMonitoring(fleet).probe_many(HOSTS) is None
    live = observe(hosts(), Registry(SimMonitoring(fleet)), parallelism=4)
    assert live.hosts["b"].state is HostLiveState.ERROR and live.hosts["b"].error == "sim: agent crashed"
    assert live.hosts["a"].state is HostLiveState.ONLINE
    assert sorted(status.name for status in live.vms.values()) == ["vm0", "vm2", "vm4", "vm6"]
    assert live.hosts["a"] == SimMonitoring(fleet).probe_host(HOSTS[0])


def _objects(fleet: SimFleet) -> None:
    """A network, a pool and a filter on a; a network on b; volumes from the fixture (a, b)."""
    with fleet.write() as connection:
        connection.execute("INSERT INTO networks (host, name, definition) VALUES ('a', 'lan', '{}')")
        connection.execute("INSERT INTO networks (host, name, definition) VALUES ('b', 'lan', '{}')")
        connection.execute("INSERT INTO datastores (host, name, path, type) VALUES ('a', 'fast', '/f', 'dir')")
        connection.execute("INSERT INTO security_groups (host, name, rules) VALUES ('a', 'ssh', '[]')")


def test_the_bulk_listing_lists_what_each_host_lists(fleet: SimFleet) -> None:
    _objects(fleet)
    monitoring = SimMonitoring(fleet)
    answering = [ref for ref in HOSTS if ref.name != "down"]
    listings = monitoring.list_many(answering)
    assert listings is not None
    found = {name: pairs for name, (pairs, _) in listings.items()}
    assert found == {ref.name: frozenset((o.object, o.name) for o in monitoring.inventory(ref)) for ref in answering}
    # Written out, from the set-up above (``alias`` is a second name for host a).
    on_a = {("network", "lan"), ("pool", "fast"), ("filter", "ssh"), ("volume", f"v{5 * 1024**3}"),
            ("volume", f"v{2 * 1024**3}")}  # fmt: skip
    assert found["a"] == found["alias"] == on_a
    assert found["b"] == {("network", "lan"), ("volume", f"v{1024**3}")}
    assert found["empty"] == frozenset()
    # The fingerprints are those ``inventory`` gives; the networks' hand-written '{}' definitions have none.
    for ref in answering:
        listed = {(o.object, o.name): o.fingerprint for o in monitoring.inventory(ref) if o.fingerprint is not None}
        assert listings[ref.name][1] == listed
    assert listings["a"][1][("pool", "fast")] == {"type": "dir", "path": "/f"}
    assert listings["a"][1][("filter", "ssh")] == {"rules": "none"}
    assert ("network", "lan") not in listings["a"][1]


def test_the_bulk_listing_declines_a_host_down_or_a_fault(fleet: SimFleet) -> None:
    assert SimMonitoring(fleet).list_many(HOSTS) is None  # host "down": listed one by one, where it fails
    fleet.set_fault(Fault("monitoring.inventory", FaultKind.PERMANENT, host="b", message="agent crashed"))
    assert SimMonitoring(fleet).list_many([HOSTS[0], HOSTS[1]]) is None


class ListHostByHost(HostByHost):
    """The sim's monitoring without its bulk probe nor its bulk listing."""

    def __init__(self, monitoring: SimMonitoring) -> None:
        super().__init__(monitoring)
        self.inventory = monitoring.inventory


def test_observe_lists_every_host_in_one_call_and_sees_what_it_sees_host_by_host(fleet: SimFleet) -> None:
    _objects(fleet)
    monitoring = SimMonitoring(fleet)
    calls: list[int] = []
    list_many = monitoring.list_many

    def counted(refs: Any) -> Any:
        calls.append(len(refs))
        return list_many(refs)

    monitoring.list_many = counted  # type: ignore[method-assign,assignment]
    bulk = observe(hosts(), Registry(monitoring), parallelism=4, inventory=True)
    assert calls == [len(HOSTS) - 1]  # every answering host, in one call
    assert bulk.objects == observe(hosts(), Registry(ListHostByHost(monitoring)), parallelism=4, inventory=True).objects
    assert set(bulk.objects) == {"a", "b", "empty", "alias"}  # "down" is not listed: no drift is read there
    assert ("pool", "fast") in bulk.objects["a"]


def test_with_a_fault_on_the_listing_each_host_is_listed_on_its_own(fleet: SimFleet) -> None:
    _objects(fleet)
    fleet.set_fault(Fault("monitoring.inventory", FaultKind.PERMANENT, host="b", message="agent crashed"))
    live = observe(hosts(), Registry(SimMonitoring(fleet)), parallelism=4, inventory=True)
    assert "b" not in live.objects  # its listing failed: taken to hold what was applied
    assert ("filter", "ssh") in live.objects["a"]


def test_only_the_hosts_named_are_listed(fleet: SimFleet) -> None:
    _objects(fleet)
    monitoring = SimMonitoring(fleet)
    for source in (monitoring, ListHostByHost(monitoring)):
        live = observe(hosts(), Registry(source), parallelism=4, inventory={"b", "down"})
        assert live.objects == {"b": frozenset({("network", "lan"), ("volume", f"v{1024**3}")})}
        assert observe(hosts(), Registry(source), parallelism=4, inventory=set()).objects == {}


def test_owners_parsed_by_the_last_bulk_probe_are_reused_and_a_changed_one_is_parsed_again(fleet: SimFleet) -> None:
    from nebctl.drivers.sim.fleet import owner_json
    from nebctl.drivers.types import Ownership

    def owned(name: str, host: str) -> Ownership:
        return Ownership("web", "VirtualMachine", "default", name, installation="i-1", spec={"host": host})

    with fleet.write() as connection:
        for index in range(7):
            connection.execute(
                "UPDATE vms SET owner = ? WHERE name = ?", (owner_json(owned(f"vm{index}", "a")), f"vm{index}")
            )
    monitoring = SimMonitoring(fleet)
    first = monitoring.probe_many(HOSTS)
    again = monitoring.probe_many(HOSTS)
    assert first is not None and again is not None
    expected = {ref.name: one_by_one(monitoring, ref) for ref in HOSTS}
    assert as_lists(again) == as_lists(first) == expected
    assert [vm.owner for vm in again["a"][1]] == [owned(name, "a") for name in ("vm0", "vm2", "vm4", "vm6")]
    # The document of vm2 changes (a new spec, as a move writes): the next probe reads the new one.
    with fleet.write() as connection:
        connection.execute("UPDATE vms SET owner = ? WHERE name = 'vm2'", (owner_json(owned("vm2", "b")),))
    moved = monitoring.probe_many(HOSTS)
    assert moved is not None
    assert [vm.owner for vm in moved["a"][1]] == [owned("vm0", "a"), owned("vm2", "b"), owned("vm4", "a"),
                                                  owned("vm6", "a")]  # fmt: skip
    assert as_lists(moved) == {ref.name: one_by_one(monitoring, ref) for ref in HOSTS}


def as_lists(found: dict[str, Any]) -> dict[str, Any]:
    return {name: (probe, list(vms)) for name, (probe, vms) in found.items()}


def test_a_few_hosts_of_many_are_probed_and_listed_from_their_own_rows(fleet: SimFleet) -> None:
    _objects(fleet)
    monitoring = SimMonitoring(fleet)
    for index in range(8):  # a fleet of a dozen hosts, of which b is asked alone
        monitoring.probe_host(HostRef(f"extra{index}", f"sim://extra{index}"))
    statements: list[str] = []
    fleet.store.read().set_trace_callback(statements.append)
    probed = monitoring.probe_many([HOSTS[1]])
    listed = monitoring.list_many([HOSTS[1]])
    fleet.store.read().set_trace_callback(None)
    assert probed is not None and listed is not None
    assert {name: (probe, list(vms)) for name, (probe, vms) in probed.items()} == {
        "b": one_by_one(monitoring, HOSTS[1])
    }
    assert [vm.name for vm in probed["b"][1]] == ["vm1", "vm3", "vm5"]
    assert probed["b"][0].disk_free == 50 * 1024**3 - 1024**3
    assert listed == {"b": (frozenset({("network", "lan"), ("volume", f"v{1024**3}")}), {
        ("volume", f"v{1024**3}"): {"format": "qcow2", "size": "1Gi"}})}  # fmt: skip
    # Read by the host's key: the VMs, volumes, networks, pools and filters of b, no other host's rows.
    assert sum("WHERE host IN ('b')" in statement for statement in statements) == 6
