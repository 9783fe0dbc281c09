"""Resources, applies, the action journal, batches and events, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import (
    ActionRecord,
    ActionState,
    ApplyState,
    DatabaseError,
    EventRecord,
    NotFound,
    ResourceRecord,
    Store,
)
from tests.database.conftest import FakeClock

VM = Kind.VIRTUAL_MACHINE


def vm(name: str, **fields: object) -> ResourceRecord:
    return ResourceRecord(kind=VM, namespace="default", name=name, stack="web", **fields)  # type: ignore[arg-type]


def test_resources_round_trip_and_upsert(store: Store, clock: FakeClock) -> None:
    spec = {"vcpu": 2, "memory": "2Gi", "note": "ünïcødé ✓", "nested": {"list": [1, 2.5, None, True]}}
    store.save_resource(vm("web-1", desired=spec, desired_hash="h1", live={"uuid": "u-1"}, host="kvm1"))
    created = clock.now
    clock.advance(10)
    store.save_resource(
        vm("web-1", desired=spec, desired_hash="h2", generation=2, status="ready", live={"uuid": "u-2"})
    )
    store.save_resource(ResourceRecord(Kind.NETWORK, "team-a", "lan", "net", desired={"cidr": "10.0.0.0/24"}))

    record = store.get_resource(ResourceKey(VM, "default", "web-1"))
    assert record is not None
    assert record.desired == spec
    assert (record.desired_hash, record.generation, record.status, record.live) == ("h2", 2, "ready", {"uuid": "u-2"})
    assert record.host is None  # the second save replaced every field
    assert record.created_at == created  # kept by the upsert
    assert record.updated_at == clock.now
    assert record.updated_at.tzinfo is not None and record.updated_at.utcoffset() == timedelta(0)
    assert record.key == ResourceKey(VM, "default", "web-1")

    assert [r.name for r in store.list_resources()] == ["lan", "web-1"]  # ordered by kind, namespace, name
    assert [r.name for r in store.list_resources(stack="web")] == ["web-1"]
    assert [r.name for r in store.list_resources(kind=Kind.NETWORK)] == ["lan"]
    assert store.get_resource(ResourceKey(VM, "default", "nope")) is None

    assert store.delete_resource(ResourceKey(VM, "default", "web-1")) is True
    assert store.delete_resource(ResourceKey(VM, "default", "web-1")) is False
    assert [r.name for r in store.list_resources()] == ["lan"]


def test_bulk_save_resources(store: Store) -> None:
    store.save_resources([vm(f"vm-{i:04d}", desired={"i": i}) for i in range(2500)])
    store.save_resources([vm("vm-0007", desired={"i": "changed"})])
    records = store.list_resources(stack="web")
    assert len(records) == 2500
    assert records[7].desired == {"i": "changed"}


def test_naive_datetimes_are_refused(store: Store) -> None:
    apply_id = store.begin_apply(stack="web", revision=None, plan={}, holder="t")
    store.journal_actions(apply_id, [ActionRecord("a", VM, "default", "x", "virtualization", "deploy")])
    with pytest.raises((ValueError, DatabaseError), match="naive"):
        store.update_action(apply_id, "a", state="running", started_at=datetime(2024, 1, 1))


def test_apply_and_journal(store: Store, clock: FakeClock) -> None:
    plan = {"actions": [{"id": "network/lan:create"}, {"id": "vm/web-1:deploy"}], "summary": {"add": 2}}
    apply_id = store.begin_apply(stack="web", revision="abc123", plan=plan, holder="alice@kvm1")
    actions = [
        ActionRecord("network/lan:create", Kind.NETWORK, "default", "lan", "network", "create"),
        ActionRecord(
            "vm/web-1:deploy",
            VM,
            "default",
            "web-1",
            "virtualization",
            "deploy",
            host="kvm1",
            depends_on=("network/lan:create",),
        ),
    ]
    store.journal_actions(apply_id, actions)
    assert store.last_unfinished_apply("web") == store.get_apply(apply_id)

    started = clock.now
    store.update_action(apply_id, "network/lan:create", state=ActionState.RUNNING, attempts=1, started_at=started)
    clock.advance(2)
    store.update_action(
        apply_id, "network/lan:create", state=ActionState.SUCCEEDED, result={"bridge": "virbr1"}, finished_at=clock.now
    )
    store.update_action(apply_id, "vm/web-1:deploy", state=ActionState.FAILED, attempts=3, error="host down")

    journal = store.actions_of(apply_id)
    assert [a.action_id for a in journal] == ["network/lan:create", "vm/web-1:deploy"]  # planned order
    lan, web = journal
    assert (lan.state, lan.attempts, lan.result, lan.started_at, lan.finished_at) == (
        "succeeded",
        1,
        {"bridge": "virbr1"},
        started,
        clock.now,
    )
    assert (web.state, web.attempts, web.error, web.depends_on, web.host) == (
        "failed",
        3,
        "host down",
        ("network/lan:create",),
        "kvm1",
    )
    assert web.apply_id == apply_id and web.key == ResourceKey(VM, "default", "web-1")

    with pytest.raises(NotFound):
        store.update_action(apply_id, "vm/nope:deploy", state="running")

    store.finish_apply(apply_id, state=ApplyState.PARTIAL, summary={"succeeded": 1, "failed": 1})
    finished = store.get_apply(apply_id)
    assert finished is not None
    assert (finished.state, finished.summary, finished.finished_at, finished.revision, finished.plan) == (
        "partial",
        {"succeeded": 1, "failed": 1},
        clock.now,
        "abc123",
        plan,
    )
    assert store.last_unfinished_apply("web") is None
    with pytest.raises(NotFound):
        store.finish_apply(999_999, state="failed", summary={})


def test_list_applies_newest_first_and_resume_target(store: Store) -> None:
    ids = [store.begin_apply(stack=s, revision=None, plan={}, holder="t") for s in ("a", "b", "a", "a")]
    store.finish_apply(ids[3], state="succeeded", summary={})
    assert [a.id for a in store.list_applies(stack="a")] == [ids[3], ids[2], ids[0]]
    assert [a.id for a in store.list_applies(limit=2)] == [ids[3], ids[2]]
    unfinished = store.last_unfinished_apply("a")
    assert unfinished is not None and unfinished.id == ids[2]


def test_batch_commits_together_or_not_at_all(store: Store) -> None:
    apply_id = store.begin_apply(stack="web", revision=None, plan={}, holder="t")
    store.journal_actions(
        apply_id, [ActionRecord("vm/web-1:deploy", VM, "default", "web-1", "virtualization", "deploy")]
    )
    key = ResourceKey(VM, "default", "web-1")

    with pytest.raises(RuntimeError), store.batch() as tx:
        tx.update_action(apply_id, "vm/web-1:deploy", state="succeeded")
        tx.save_resource(vm("web-1", status="running"))
        tx.add_event(type="vm.running", message="web-1 runs", key=key)
        raise RuntimeError("crash between the writes")
    assert store.actions_of(apply_id)[0].state == "pending"
    assert store.get_resource(key) is None
    assert store.list_events() == []

    with store.batch() as tx:
        tx.update_action(apply_id, "vm/web-1:deploy", state="succeeded")
        tx.save_resource(vm("web-1", status="running"))
        tx.add_event(type="vm.running", message="web-1 runs", key=key)
        # Reads inside the batch see its own writes.
        assert tx.get_resource(key) is not None
    assert store.actions_of(apply_id)[0].state == "succeeded"
    record = store.get_resource(key)
    assert record is not None and record.status == "running"
    assert [e.type for e in store.list_events(key=key)] == ["vm.running"]

    with store.batch() as tx:
        tx.delete_resource(key)
    assert store.get_resource(key) is None


def test_events(store: Store, clock: FakeClock) -> None:
    web = ResourceKey(VM, "default", "web-1")
    first = store.add_event(type="apply.started", message="apply 1", stack="web", data={"apply": 1})
    second = store.add_event(
        EventRecord(
            type="drift.detected",
            message="stopped outside nebctl",
            severity="warning",
            kind=VM,
            namespace="default",
            name="web-1",
            stack="web",
            data={"was": "running"},
        )
    )
    clock.advance(1)
    ids = [store.add_event(type="vm.running", message=f"run {i}", key=web) for i in range(5)]
    assert first < second < ids[0]

    events = store.list_events()
    assert [e.id for e in events] == [first, second, *ids]
    assert events[0].key is None and events[0].data == {"apply": 1} and events[0].stack == "web"
    assert events[1].severity == "warning" and events[1].key == web
    assert events[2].time == clock.now

    assert [e.id for e in store.list_events(after_id=second)] == ids
    assert [e.id for e in store.list_events(after_id=second, limit=2)] == ids[:2]
    assert [e.id for e in store.list_events(key=web)] == [second, *ids]
    assert [e.id for e in store.list_events(key=web, limit=2, newest=True)] == ids[-2:]
    assert [e.id for e in store.list_events(stack="web")] == [first, second]
    with pytest.raises(ValueError, match="type"):
        store.add_event(message="no type")


def test_events_appended_in_bulk_keep_their_order(store: Store, clock: FakeClock) -> None:
    """``append_events`` (the journal's bulk statement, no ids read back) and ``add_events`` write the same rows."""
    web = ResourceKey(VM, "default", "web-1")
    events = [
        EventRecord(
            type="action.succeeded",
            message=f"deploy {i}",
            kind=VM,
            namespace="default",
            name="web-1",
            stack="web",
            data={"action": f"a{i}"},
        )
        for i in range(3)
    ]
    with store.batch() as tx:
        tx.append_events(events)
        tx.append_events([])
    ids = store.add_events(events[:1])
    listed = store.list_events(key=web)
    assert [(e.type, e.message, e.data, e.stack) for e in listed] == [
        *[("action.succeeded", f"deploy {i}", {"action": f"a{i}"}, "web") for i in range(3)],
        ("action.succeeded", "deploy 0", {"action": "a0"}, "web"),
    ]
    assert [e.id for e in listed][-1:] == ids and all(e.time == clock.now for e in listed)


def test_times_survive_as_utc(store: Store) -> None:
    apply_id = store.begin_apply(stack="web", revision=None, plan={}, holder="t")
    store.journal_actions(apply_id, [ActionRecord("a", VM, "default", "x", "virtualization", "deploy")])
    paris = datetime(2024, 7, 1, 14, 30, 15, 654321, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Paris")
    )
    store.update_action(apply_id, "a", state="running", started_at=paris)
    started = store.actions_of(apply_id)[0].started_at
    assert started == paris and started is not None
    assert started.tzinfo == UTC and started.microsecond == 654321


def test_json_values_read_back_as_the_standard_library_reads_them(store: Store) -> None:
    """The JSON columns are parsed by orjson, and what it refuses by ``json``: (on SQLite, the one backend that
    stores it) the ``Infinity`` that ``json.dumps`` writes for an infinite float. Integers at both ends of the
    64-bit range come back as the same integers (their types checked: a float of a power of two would compare
    equal)."""
    spec: dict[str, object] = {
        "big": 2**64 - 1,
        "negative": -(2**63),
        "odd": 2**53 + 1,  # no float has this value
        "text": "ünïcødé ✓",
        "nested": [1, 2.5, None],
    }
    if store.backend == "sqlite":  # the servers' JSON columns refuse it on write
        spec["infinite"] = float("inf")
    live = {"uuid": "u-1", "disks": [{"size": 2**62 + 3}]}
    store.save_resource(vm("web-1", desired=spec, live=live))
    record = store.get_resource(ResourceKey(VM, "default", "web-1"))
    assert record is not None
    assert record.desired == spec and record.live == live
    (listed,) = [r for r in store.list_resources() if r.name == "web-1"]
    assert listed.desired == spec and listed.live == live
    assert listed.desired is not None
    assert all(type(listed.desired[name]) is int for name in ("big", "negative", "odd"))
