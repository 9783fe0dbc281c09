"""``Store.record_observations`` on every backend: what the probes of some hosts saw replaces what those hosts'
earlier probes left, and nothing else; times come from the store's clock; a resource deleted takes its
observation with it."""

from __future__ import annotations

from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import ObservationRecord, ResourceRecord, Store
from tests.database.conftest import FakeClock

VM = Kind.VIRTUAL_MACHINE


def _vm(name: str, host: str, state: str, *drift: str) -> ObservationRecord:
    return ObservationRecord(VM, "default", name, host, state, {"host": host, "drift": list(drift)})


def _host(name: str, state: str = "online") -> ObservationRecord:
    return ObservationRecord(Kind.HOST, "default", name, name, state, {"cpus": 8})


def test_a_round_replaces_what_its_hosts_saw_before_and_nothing_else(store: Store, clock: FakeClock) -> None:
    first = clock.now
    store.record_observations(
        [_host("h1"), _host("h2"), _vm("a", "h1", "stopped", "was stopped"), _vm("b", "h2", "absent")],
        probed=["h1", "h2"],
    )
    rows = store.list_observations()
    assert set(rows) == {
        ResourceKey(Kind.HOST, "default", "h1"),
        ResourceKey(Kind.HOST, "default", "h2"),
        ResourceKey(VM, "default", "a"),
        ResourceKey(VM, "default", "b"),
    }
    a = rows[ResourceKey(VM, "default", "a")]
    assert (a.state, a.host, a.drift, a.observed_at) == ("stopped", "h1", ("was stopped",), first)

    # h1 probed again: vm/a is as recorded now (no row); h2 was not probed, its rows stay as they were.
    clock.advance(60)
    store.record_observations([_host("h1")], probed=["h1"])
    rows = store.list_observations()
    assert ResourceKey(VM, "default", "a") not in rows
    assert rows[ResourceKey(Kind.HOST, "default", "h1")].observed_at == clock.now
    assert rows[ResourceKey(Kind.HOST, "default", "h2")].observed_at == first
    assert rows[ResourceKey(VM, "default", "b")].state == "absent"

    # vm/b moved to h1 and is seen there: one row, now under h1, whatever h2's row said.
    store.record_observations([_host("h1"), _vm("b", "h1", "running", "was moved to host h1")], probed=["h1"])
    b = store.get_observation(ResourceKey(VM, "default", "b"))
    assert b is not None and (b.host, b.state) == ("h1", "running")
    assert store.list_observations(kind=Kind.HOST).keys() == {
        ResourceKey(Kind.HOST, "default", "h1"),
        ResourceKey(Kind.HOST, "default", "h2"),
    }


def test_an_observation_goes_with_its_resource(store: Store) -> None:
    store.save_resource(ResourceRecord(VM, "default", "a", "s", status="running"))
    store.record_observations([_vm("a", "h1", "stopped")], probed=["h1"])
    assert store.delete_resource(ResourceKey(VM, "default", "a"))
    assert store.get_observation(ResourceKey(VM, "default", "a")) is None


def test_a_thousand_hosts_in_one_round(store: Store) -> None:
    hosts = [f"h{index:04d}" for index in range(1500)]  # more than one chunk of the delete
    store.record_observations([_host(name) for name in hosts], probed=hosts)
    store.record_observations([_host(name, "error") for name in hosts], probed=hosts)
    rows = store.list_observations(kind=Kind.HOST)
    assert len(rows) == 1500 and {row.state for row in rows.values()} == {"error"}


def test_the_rows_of_resources_replaced_go_whatever_host_they_name(store: Store, clock: FakeClock) -> None:
    first = clock.now
    store.record_observations(
        [_host("h1"), _host("h2"), _vm("a", "h1", "stopped", "was stopped"), _vm("b", "h2", "absent"),
         _vm("c", "h2", "stopped")],
        probed=["h1", "h2"],
    )  # fmt: skip
    # No host probed again; the records of a and c moved: a is as recorded now (no row), c's row is new, b's stays.
    clock.advance(60)
    many = [ResourceKey(VM, "default", f"gone-{index}") for index in range(1200)]  # more than one chunk of keys
    replaced = [ResourceKey(VM, "default", "a"), ResourceKey(VM, "default", "c"), *many]
    store.record_observations([_vm("c", "h2", "running", "was started")], probed=[], replaced=replaced)
    rows = store.list_observations()
    assert set(rows) == {
        ResourceKey(Kind.HOST, "default", "h1"),
        ResourceKey(Kind.HOST, "default", "h2"),
        ResourceKey(VM, "default", "b"),
        ResourceKey(VM, "default", "c"),
    }
    c = rows[ResourceKey(VM, "default", "c")]
    assert (c.host, c.state, c.drift, c.observed_at) == ("h2", "running", ("was started",), clock.now)
    assert rows[ResourceKey(VM, "default", "b")].observed_at == first
    assert rows[ResourceKey(Kind.HOST, "default", "h2")].observed_at == first
