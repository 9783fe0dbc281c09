"""``planning.incremental.seen_since``: what planning reads of a view made from another by probing a few hosts again
is that view's as read whole (``seen``), built from the probed hosts' VMs alone, with the other hosts' chunks shared
unread; and comparing it with the other view's reads only the probed hosts' chunks, finding the VMs that moved."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nebctl.controller.kept_observations import KeptObservation, ObservationKeeper
from nebctl.controller.observing import observe, observe_again
from nebctl.controller.planning.incremental import _moved_vms, seen, seen_since
from nebctl.core.deferred import DeferredChunks
from nebctl.core.settings import Settings
from nebctl.drivers.registry import Registry, build_registry
from nebctl.drivers.sim.fleet import open_fleet
from tests.unit.planning.test_kept_observations import HOSTS, VERSIONS, Clock, _deploy


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Registry, Path]]:
    """Two sim hosts, h1 and h2, and a registry of drivers on them."""
    settings = Settings(state_dir=tmp_path)
    fleet = open_fleet(settings)
    try:
        for host in HOSTS:
            fleet.add_host(host)
    finally:
        fleet.close()
    registry = build_registry(settings, entry_points=False)
    yield registry, tmp_path
    registry.close()


def _uuid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, name))  # as ``_deploy`` makes them


def test_a_view_probed_again_on_one_host_is_read_and_compared_on_that_host_alone(world: tuple[Registry, Path]) -> None:
    registry, root = world
    for host, name in (("h1", "a"), ("h1", "b"), ("h2", "c")):
        _deploy(root, host, name)
    keeper = ObservationKeeper(root / "observations", database="db", clock=Clock())
    keeper.keep(KeptObservation(HOSTS, frozenset(HOSTS), observe(HOSTS, registry, inventory=True), 1000.0, VERSIONS))
    found = keeper.reusable(HOSTS, HOSTS, registry)
    assert found is not None
    kept = found.kept.live  # read back, its VMs in chunks by host
    # What the kept trace's state holds of it: pickled, read back.
    before = pickle.loads(pickle.dumps(seen(kept, by_host=True)))

    _deploy(root, "h2", "d")
    fleet = open_fleet(Settings(state_dir=root))
    try:
        fleet.stop_vm("c")  # as if someone powered it off
    finally:
        fleet.close()
    again = observe_again(kept, HOSTS, registry, inventory=True)
    assert again is not None
    view, probed = again
    within = view.hosts_probed_since(kept.identity)
    assert probed == ["h2"] and within == frozenset({"h2"})

    now = seen_since(view, before, within)
    assert now is not None and isinstance(now.vms, DeferredChunks) and isinstance(before.vms, DeferredChunks)
    assert _moved_vms(before.vms, now.vms, within) == {_uuid("c"), _uuid("d")}
    assert before.vms.chunks_read == 1  # h2's: h1's chunk was neither read nor compared
    whole = seen(view)
    assert (now.hosts, now.objects, now.fingerprints) == (whole.hosts, whole.objects, whole.fingerprints)
    assert dict(now.vms) == dict(whole.vms)
    assert _moved_vms(before.vms, whole.vms, None) == {_uuid("c"), _uuid("d")}  # compared whole, the same

    # Kept as the trace's state keeps it: the shared chunks are written as they were read.
    assert dict(pickle.loads(pickle.dumps(now)).vms) == dict(whole.vms)
