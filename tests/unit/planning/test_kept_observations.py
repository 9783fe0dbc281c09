"""``controller.kept_observations.ObservationKeeper`` on the sim fleet: a kept observation is found again only for
the same hosts and listing, while the fleet is as it was and the observation is young enough; never by another
version of nebctl, never from a corrupt file; and the file leaves out the specs the VMs' ownerships carry. A
controller plans on it until the fleet moves, and writes it to the database only where asked to."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest

from nebctl.controller import kept_observations
from nebctl.controller.applying import Controller, PlanOptions
from nebctl.controller.kept_observations import KeptObservation, ObservationKeeper
from nebctl.controller.observing import observe, observe_again
from nebctl.core.deferred import DeferredChunks
from nebctl.core.settings import Settings
from nebctl.database.versions import Versions
from nebctl.drivers.registry import Registry, build_registry
from nebctl.drivers.sim import Fault, FaultKind, SimMonitoring, SimVirtualization
from nebctl.drivers.sim.fleet import open_fleet
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe, HostRef, Ownership, VMDefinition, VMStatus
from nebctl.reconcilers.base import LiveView
from nebctl.schemas.caching import Entries
from tests.support.drills import Workspace, fleet_manifests

HOSTS: dict[str, tuple[HostRef, Any]] = {name: (HostRef(name, f"sim://{name}"), None) for name in ("h1", "h2")}
VERSIONS = Versions(resources=7, access=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path) -> Any:
    settings = Settings(state_dir=tmp_path)
    fleet = open_fleet(settings)
    try:
        fleet.add_host("h1")
        fleet.add_host("h2")
    finally:
        fleet.close()
    registry = build_registry(settings, entry_points=False)
    yield registry, tmp_path
    registry.close()


def observed(registry: Registry, at: float = 1000.0) -> KeptObservation:
    live = observe(HOSTS, registry)
    assert live.token is not None  # the sim vouches for what it reported
    return KeptObservation(HOSTS, frozenset({"h1"}), live, at, VERSIONS)


@pytest.mark.parametrize("in_memory", [True, False], ids=["memory", "directory"])
def test_found_again_only_for_the_same_hosts_while_the_fleet_is_as_it_was(world: Any, in_memory: bool) -> None:
    registry, root = world
    clock = Clock()
    keeper = ObservationKeeper(None if in_memory else root / "observations", database="db", clock=clock)
    assert keeper.find(HOSTS, {"h1"}, registry) is None
    observation = observed(registry)
    keeper.keep(observation)

    found = keeper.find(HOSTS, {"h1"}, registry)
    assert found is not None and found.live == observation.live and found.versions == VERSIONS
    # The very view, read back: its identity, which a plan made from a kept trace of that view compares alone.
    assert found.live.identity is not None and found.live.identity == observation.live.identity
    assert observe(HOSTS, registry).identity not in (None, observation.live.identity)  # each view its own
    assert keeper.find(HOSTS, {"h1", "h2"}, registry) is None  # another listing
    assert keeper.find({"h1": HOSTS["h1"]}, {"h1"}, registry) is None  # other hosts
    moved = {**HOSTS, "h2": (HostRef("h2", "sim://elsewhere"), None)}
    assert keeper.find(moved, {"h1"}, registry) is None

    clock.now += 60.0
    assert keeper.find(HOSTS, {"h1"}, registry) is not None  # as old as the host probes let figures get
    young = keeper.reusable(HOSTS, {"h1"}, registry)
    assert young is not None and (young.whole, young.aged) == (True, False)
    clock.now += 0.5
    assert keeper.find(HOSTS, {"h1"}, registry) is None  # older: the load it holds is too stale to take as it is
    aged = keeper.reusable(HOSTS, {"h1"}, registry)  # but its VMs are still what the drivers vouch for
    assert aged is not None and (aged.whole, aged.aged) == (True, True) and aged.kept.live == observation.live
    clock.now -= 120.0
    assert keeper.find(HOSTS, {"h1"}, registry) is None  # from the future: a clock that moved back
    assert keeper.reusable(HOSTS, {"h1"}, registry) is None

    clock.now = 1000.0
    fleet = open_fleet(Settings(state_dir=root))
    try:
        fleet.add_host("h3")  # the fleet moves, even on a host not observed: the word is the whole file's
    finally:
        fleet.close()
    assert keeper.find(HOSTS, {"h1"}, registry) is None


def test_an_old_observation_is_found_only_with_each_hosts_word(world: Any) -> None:
    """Its hosts' own probes are made again (``observing.observe_again``), which needs each host's word."""
    registry, root = world
    clock = Clock()
    keeper = ObservationKeeper(root / "observations", database="db", clock=clock)
    observation = observed(registry, at=clock.now)
    keeper.keep(dataclasses.replace(observation, live=dataclasses.replace(observation.live, host_tokens=None)))
    assert keeper.find(HOSTS, {"h1"}, registry) is not None  # young: the drivers' word alone vouches for it
    clock.now += 61.0
    assert keeper.reusable(HOSTS, {"h1"}, registry) is None
    keeper.keep(observation)
    found = keeper.reusable(HOSTS, {"h1"}, registry)
    assert found is not None and found.aged and found.whole


@pytest.mark.parametrize("in_memory", [True, False], ids=["memory", "directory"])
def test_missing_tells_without_reading_whether_anything_is_kept(
    world: Any, in_memory: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the controller asks before reading the records (a plan that observes afresh reads them all)."""
    registry, root = world
    clock = Clock()
    directory = None if in_memory else root / "observations"
    keeper = ObservationKeeper(directory, database="db", clock=clock)
    assert keeper.missing()  # nothing kept
    keeper.keep(observed(registry, at=clock.now))
    monkeypatch.setattr(Entries, "get", lambda *_: pytest.fail("read"))
    clock.now += 3600.0
    assert not keeper.missing()  # however old: its hosts' own probes bring it up to date
    assert ObservationKeeper(directory, database="another", clock=clock).missing()  # nothing for another database


def test_a_view_read_back_builds_the_vms_of_one_host_at_a_time(world: Any) -> None:
    registry, root = world
    observation = observed(registry)
    owner = Ownership("s", "VirtualMachine", "default", "web", 0, "install")
    vms = {f"u{n}": VMStatus(uuid=f"u{n}", name=f"vm{n}", state=VMLiveState.RUNNING, owner=owner) for n in range(4)}
    where = {"u0": "h1", "u1": "h2", "u2": "h1", "u3": "h2"}
    objects = {"h1": frozenset({("network", "lan")})}
    live = dataclasses.replace(observation.live, vms=vms, vm_hosts=where, objects=objects)
    keeper = ObservationKeeper(root / "observations", database="db", clock=Clock())
    keeper.keep(dataclasses.replace(observation, live=live))
    found = keeper.find(HOSTS, {"h1"}, registry)
    assert found is not None and isinstance(found.live.vms, DeferredChunks)
    assert found.live.vms["u2"].name == "vm2" and found.live.vms.chunks_read == 1  # h1's VMs only
    assert found.live.objects == objects
    assert found.live == live  # all of it, as it was
    assert found.live.vms.chunks_read == 2


def test_a_view_the_drivers_did_not_vouch_for_is_never_kept(world: Any) -> None:
    registry, root = world
    keeper = ObservationKeeper(root / "observations", database="db", clock=Clock())
    keeper.keep(dataclasses.replace(observed(registry), live=dataclasses.replace(observed(registry).live, token=None)))
    assert not (root / "observations").exists()
    assert keeper.find(HOSTS, {"h1"}, registry) is None


def test_another_version_another_database_or_a_corrupt_file_finds_nothing(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, root = world
    directory = root / "observations"
    ObservationKeeper(directory, database="db", clock=Clock()).keep(observed(registry))
    assert ObservationKeeper(directory, database="db", clock=Clock()).find(HOSTS, {"h1"}, registry) is not None
    assert ObservationKeeper(directory, database="other", clock=Clock()).find(HOSTS, {"h1"}, registry) is None

    [entry] = directory.glob("*/*")
    data = bytearray(entry.read_bytes())
    data[-5] ^= 0xFF
    entry.write_bytes(bytes(data))
    assert ObservationKeeper(directory, database="db", clock=Clock()).find(HOSTS, {"h1"}, registry) is None

    ObservationKeeper(directory, database="db", clock=Clock()).keep(observed(registry))
    monkeypatch.setattr(kept_observations, "code_digest", lambda: b"another nebctl")
    assert ObservationKeeper(directory, database="db", clock=Clock()).find(HOSTS, {"h1"}, registry) is None


def test_the_file_leaves_out_the_specs_of_the_ownerships(world: Any) -> None:
    registry, root = world
    observation = observed(registry)
    owner = Ownership("s", "VirtualMachine", "default", "web", 2, "install", spec={"password": "not on disk"})
    vm = VMStatus(uuid="u1", name="web", state=VMLiveState.RUNNING, vcpu=1, memory=1, owner=owner)
    live = LiveView(hosts=observation.live.hosts, vms={"u1": vm}, vm_hosts={"u1": "h1"}, token=observation.live.token)
    directory = root / "observations"
    ObservationKeeper(directory, database="db", clock=Clock()).keep(dataclasses.replace(observation, live=live))
    [entry] = directory.glob("*/*")
    assert b"not on disk" not in entry.read_bytes()
    found = ObservationKeeper(directory, database="db", clock=Clock()).find(HOSTS, {"h1"}, registry)
    assert found is not None
    kept_owner = found.live.vms["u1"].owner
    assert kept_owner is not None and kept_owner.spec is None
    assert (kept_owner.stack, kept_owner.name, kept_owner.incarnation, kept_owner.installation) == (
        "s",
        "web",
        2,
        "install",
    )


def _deploy(root: Path, host: str, name: str) -> None:
    fleet = open_fleet(Settings(state_dir=root))
    try:
        definition = VMDefinition(name=name, uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), vcpu=1, memory=2**30)
        SimVirtualization(fleet).deploy(HOSTS[host][0], definition, start=True)
    finally:
        fleet.close()


def _as_planned(live: LiveView) -> tuple[object, ...]:
    """What a plan reads of ``live`` (its usage figures aside, which move with every probe)."""
    vms = {uuid: (status.state, status.vcpu, status.memory, status.owner) for uuid, status in live.vms.items()}
    hosts = {name: (probe.state, probe.cpus, probe.memory) for name, probe in live.hosts.items()}
    return hosts, vms, dict(live.vm_hosts), dict(live.objects), dict(live.fingerprints)


@pytest.mark.parametrize("in_memory", [True, False], ids=["memory", "directory"])
def test_only_the_hosts_whose_word_moved_are_probed_again(
    world: Any, in_memory: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, root = world
    for host, name in (("h1", "a"), ("h1", "b"), ("h2", "c")):
        _deploy(root, host, name)
    keeper = ObservationKeeper(None if in_memory else root / "observations", database="db", clock=Clock())
    live = observe(HOSTS, registry, inventory=True)
    assert live.token is not None and live.host_tokens is not None and live.host_tokens.keys() == HOSTS.keys()
    keeper.keep(KeptObservation(HOSTS, frozenset(HOSTS), live, 1000.0, VERSIONS))
    found = keeper.reusable(HOSTS, HOSTS, registry)
    assert found is not None and found.whole

    _deploy(root, "h2", "d")  # h2 moved, h1 did not
    assert keeper.find(HOSTS, HOSTS, registry) is None
    found = keeper.reusable(HOSTS, HOSTS, registry)
    assert found is not None and not found.whole
    probed: list[str] = []
    one, many = SimMonitoring.probe_host, SimMonitoring.probe_many

    def probe_host(self: SimMonitoring, ref: HostRef) -> Any:
        probed.append(ref.name)
        return one(self, ref)

    def probe_many(self: SimMonitoring, hosts: Any) -> Any:
        probed.extend(ref.name for ref in hosts)
        return many(self, hosts)

    monkeypatch.setattr(SimMonitoring, "probe_host", probe_host)
    monkeypatch.setattr(SimMonitoring, "probe_many", probe_many)
    again = observe_again(found.kept.live, HOSTS, registry, inventory=True)
    assert again is not None
    view, moved = again
    assert moved == ["h2"] and probed == ["h2"]
    assert view.hosts["h1"] == live.hosts["h1"]  # as the kept observation saw it, usage figures included
    monkeypatch.undo()
    fresh = observe(HOSTS, registry, inventory=True)
    assert _as_planned(view) == _as_planned(fresh)  # what a whole observation sees now
    assert (view.token, view.host_tokens) == (fresh.token, fresh.host_tokens)
    assert view.identity not in (None, live.identity, fresh.identity)
    assert len(view.vms) == 4
    # It names the view it was made from, and the hosts probed again since; a view made from it names both.
    assert (
        view.hosts_probed_since(live.identity) == frozenset({"h2"}) and view.hosts_probed_since(fresh.identity) is None
    )
    _deploy(root, "h1", "e")
    later = observe_again(view, HOSTS, registry, inventory=True)
    assert later is not None and later[1] == ["h1"]
    assert later[0].hosts_probed_since(view.identity) == frozenset({"h1"})
    assert later[0].hosts_probed_since(live.identity) == frozenset({"h1", "h2"})

    # No word for some host now (a fault set): nothing to observe again from.
    fleet = open_fleet(Settings(state_dir=root))
    try:
        fleet.set_fault(Fault(action="monitoring.probe_vms", kind=FaultKind.TEMPORARY, probability=0.5))
    finally:
        fleet.close()
    assert observe_again(found.kept.live, HOSTS, registry, inventory=True) is None


def test_observed_again_for_its_figures_each_host_is_probed_alone(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An observation older than its usage figures may be: each host not probed again whole has its own probe made
    again (one bulk call), and the view holds what that call answered, with the kept view's VMs. A host that now
    answers otherwise than it did leaves nothing to observe again from."""
    registry, root = world
    for host, name in (("h1", "a"), ("h2", "c")):
        _deploy(root, host, name)
    live = observe(HOSTS, registry, inventory=True)
    answered: list[Any] = []
    real = SimMonitoring.probe_hosts

    def probe_hosts(self: SimMonitoring, hosts: Any) -> Any:
        answered.append(real(self, hosts))
        return answered[-1]

    def no_vms(*_: Any) -> None:
        pytest.fail("the VMs were probed again")

    monkeypatch.setattr(SimMonitoring, "probe_hosts", probe_hosts)
    monkeypatch.setattr(SimMonitoring, "probe_many", no_vms)
    monkeypatch.setattr(SimMonitoring, "probe_vms", no_vms)
    again = observe_again(live, HOSTS, registry, inventory=True, figures=True)
    assert again is not None
    view, moved = again
    assert moved == [] and len(answered) == 1 and dict(view.hosts) == answered[0]
    assert dict(view.vms) == dict(live.vms) and dict(view.vm_hosts) == dict(live.vm_hosts) and len(view.vms) == 2
    assert view.objects == live.objects and view.token == live.token
    assert view.hosts_probed_since(live.identity) == frozenset()  # no VM compared again: none read again

    def gone(self: SimMonitoring, hosts: Any) -> Any:
        return {ref.name: HostProbe(name=ref.name, state=HostLiveState.ERROR, error="gone") for ref in hosts}

    monkeypatch.setattr(SimMonitoring, "probe_hosts", gone)
    assert observe_again(live, HOSTS, registry, inventory=True, figures=True) is None


def test_a_kept_observation_without_the_hosts_words_is_not_observed_again(world: Any) -> None:
    registry, root = world
    keeper = ObservationKeeper(root / "observations", database="db", clock=Clock())
    observation = observed(registry)
    keeper.keep(dataclasses.replace(observation, live=dataclasses.replace(observation.live, host_tokens=None)))
    assert keeper.reusable(HOSTS, {"h1"}, registry) is not None  # as it is: the whole fleet's word holds
    _deploy(root, "h2", "d")
    assert keeper.reusable(HOSTS, {"h1"}, registry) is None


# --- the controller: a plan on the kept observation, and the service's plans writing none -----------------------


def test_the_controller_plans_on_a_vouched_for_observation_until_the_fleet_moves(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "w")
    applied = workspace.apply()
    assert applied.returncode == 0, applied.stderr
    documents = workspace.documents()
    options = PlanOptions(stack=workspace.stack)
    registry = build_registry(workspace.settings)
    try:
        with workspace.store() as store:
            # The service's: the observation in memory, nothing of it written (its monitor writes that).
            quiet = Controller(
                store=store,
                registry=registry,
                settings=workspace.settings,
                observations=ObservationKeeper(),
                keep_observations=False,
            )
            before = store.change_versions()
            first = quiet.plan(documents, options)
            assert store.change_versions() == before and not first.plan.has_changes
            second = quiet.plan(documents, options)
            assert second.request.live is first.request.live  # planned on the kept view, no probe
            assert store.change_versions() == before

            with workspace.fleet() as fleet:
                fleet.stop_vm("web-1")
            third = quiet.plan(documents, options)
            assert third.request.live is not first.request.live  # the fleet moved: observed again
            assert third.plan.has_changes and any(c.key.name == "web-1" for c in third.plan.changes)
            # Past the age of its figures: the hosts' own probes are made again, and still nothing is written.
            assert quiet.observations is not None
            quiet.observations.max_age = 0.0
            samples = len(store.host_samples()), len(store.vm_samples())
            fourth = quiet.plan(documents, options)
            assert fourth.request.live is not third.request.live
            assert dict(fourth.request.live.vms) == dict(third.request.live.vms)  # the VMs as the drivers vouch
            assert (len(store.host_samples()), len(store.vm_samples())) == samples
            assert store.change_versions() == before

            # The CLI's: each fresh observation is written (once), a reused one is not written again.
            keeping = Controller(
                store=store, registry=registry, settings=workspace.settings, observations=ObservationKeeper()
            )
            counted = store.change_versions().resources
            keeping.plan(documents, options)
            assert store.change_versions().resources == counted + 1
            keeping.plan(documents, options)
            assert store.change_versions().resources == counted + 1
    finally:
        registry.close()


def _rows(store: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The observations in the database: each VM's row whole but its time, each host's state and time."""
    found = store.list_observations()
    vms = {key.name: (o.host, o.state, o.details) for key, o in found.items() if key.kind.value == "VirtualMachine"}
    hosts = {key.name: (o.state, o.observed_at) for key, o in found.items() if key.kind.value == "Host"}
    return vms, hosts


def test_an_observation_written_again_writes_what_moved_and_leaves_what_a_whole_one_writes(tmp_path: Path) -> None:
    manifests = tmp_path / "fleet.yaml"
    manifests.write_text(fleet_manifests(vms=8, hosts=4))
    workspace = Workspace(tmp_path / "w", manifests=manifests)
    applied = workspace.apply()
    assert applied.returncode == 0, applied.stderr
    documents, options = workspace.documents(), PlanOptions(stack=workspace.stack)
    registry = build_registry(workspace.settings)
    try:
        with workspace.store() as store:
            records = {r.name: r for r in store.list_resources() if r.kind.value == "VirtualMachine"}
            on = {name: str(record.host) for name, record in records.items()}
            drifting = "vm-0000"
            quiet = next(name for name in sorted(on) if on[name] not in (on[drifting],))  # another host
            stopped = next(name for name in sorted(on) if on[name] not in (on[drifting], on[quiet]))
            with workspace.fleet() as fleet:
                fleet.stop_vm(drifting)
            keeper = ObservationKeeper(tmp_path / "observations", database="db")
            controller = Controller(store=store, registry=registry, settings=workspace.settings, observations=keeper)
            controller.plan(documents, options)  # observed whole, and written
            vms, hosts = _rows(store)
            assert vms == {drifting: (on[drifting], "stopped", {"drift": ["was stopped"], "host": on[drifting],
                                                                "vcpu": 1, "memory": 512 * 2**20})}  # fmt: skip

            # Behind the kept observation's back: a VM stops (its host's word moves), and two records are written
            # on hosts whose word does not: the drifting VM's now says it is stopped (its row goes), and a running
            # VM's says it is stopped (it gets a row, its host not probed again).
            with workspace.fleet() as fleet:
                fleet.stop_vm(stopped)
            store.save_resources(
                [
                    dataclasses.replace(records[name], applied={**(records[name].applied or {}), "state": "stopped"})
                    for name in (drifting, quiet)
                ]
            )
            controller.plan(documents, options)
            partial_vms, partial_hosts = _rows(store)
            # The rows of the hosts not probed again were not written again; the probed host's were.
            assert {name: at for name, (_, at) in partial_hosts.items() if name != on[stopped]} == {
                name: at for name, (_, at) in hosts.items() if name != on[stopped]
            }
            assert partial_hosts[on[stopped]][1] > hosts[on[stopped]][1]

            # What an observation of every host, written whole, leaves.
            Controller(store=store, registry=registry, settings=workspace.settings).plan(documents, options)
            whole_vms, whole_hosts = _rows(store)
            assert partial_vms == whole_vms
            assert {name: state for name, (state, _) in partial_hosts.items()} == {
                name: state for name, (state, _) in whole_hosts.items()
            }
            assert set(whole_vms) == {quiet, stopped}
            assert whole_vms[quiet][1] == "running" and whole_vms[stopped][1] == "stopped"
    finally:
        registry.close()
