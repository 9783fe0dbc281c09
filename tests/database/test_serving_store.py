"""Store operations of the service: stack status (a sync request survives a status write), requests taken once,
resource health replaced per stack, and each apply's revision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nebctl.core.keys import Kind
from nebctl.database.records import ResourceHealthRecord, RevisionRecord, StackStatusRecord
from nebctl.database.store import Store


def test_sync_requests_are_taken_once(store: Store) -> None:
    assert store.take_sync_requests() == []
    store.request_sync("web")  # no status yet: the row is created, unknown
    status = store.stack_status("web")
    assert status is not None and status.sync_status == "unknown" and status.sync_requested_at is not None
    store.save_stack_status(StackStatusRecord(stack="web", sync_status="synced", revision="abc"))
    assert store.stack_status("web").sync_requested_at is not None  # type: ignore[union-attr]
    assert store.take_sync_requests() == ["web"]
    assert store.take_sync_requests() == []
    after = store.stack_status("web")
    assert after is not None and after.sync_status == "synced" and after.revision == "abc"


def test_resource_health_is_replaced_per_stack(store: Store) -> None:
    def health(name: str, stack: str, value: str) -> ResourceHealthRecord:
        return ResourceHealthRecord(Kind.VIRTUAL_MACHINE, "default", name, stack, value)

    later = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=18)
    store.save_resource_health("a", [health("x", "a", "healthy"), health("y", "a", "degraded")])
    store.save_resource_health("b", [health("z", "b", "unknown")])
    store.save_resource_health(
        "a", [ResourceHealthRecord(Kind.VIRTUAL_MACHINE, "default", "x", "a", "out of sync", "why", 2, later)]
    )
    rows = {(h.stack, h.name): (h.health, h.failures, h.next_attempt_at) for h in store.list_resource_health()}
    assert rows == {("a", "x"): ("out of sync", 2, later), ("b", "z"): ("unknown", 0, None)}


def test_apply_revision(store: Store) -> None:
    apply_id = store.begin_apply(stack="web", revision="0123456789ab", plan={}, holder="t")
    revision = RevisionRecord("0123456789abcdef", "Ada <ada@example.org>", "Subject", True, "file:///r")
    store.record_revision(apply_id, revision)
    assert store.apply_revision(apply_id) == revision
    assert store.apply_revision(apply_id + 1) is None
    assert revision.label == "0123456789ab-dirty"


def test_health_counts_group_each_stack_by_health(store: Store) -> None:
    def health(name: str, stack: str, value: str, failures: int = 0) -> ResourceHealthRecord:
        return ResourceHealthRecord(Kind.VIRTUAL_MACHINE, "default", name, stack, value, None, failures)

    store.save_resource_health(
        "a",
        [
            health("v1", "a", "healthy"),
            health("v2", "a", "healthy"),
            health("v3", "a", "degraded", 3),
            health("v4", "a", "out of sync", 1),
            health("v5", "a", "out of sync"),
        ],
    )
    store.save_resource_health("b", [health("w1", "b", "unknown")])
    assert store.health_counts() == {
        "a": {"healthy": (2, 0), "degraded": (1, 1), "out of sync": (2, 1)},
        "b": {"unknown": (1, 0)},
    }


def test_summaries_and_plan_less_applies_say_what_the_full_records_say(store: Store) -> None:
    from nebctl.database.records import ResourceRecord, ResourceSummary

    spec = {"spec": {"vcpu": 1, "nics": [{"network": "lan"}]}}
    store.save_resources(
        [
            ResourceRecord(Kind.VIRTUAL_MACHINE, "default", "b", "web", desired=spec, status="running", host="h1"),
            ResourceRecord(Kind.VIRTUAL_MACHINE, "team", "a", "web", desired=spec, status="pending"),
            ResourceRecord(Kind.NETWORK, "default", "lan", "web", desired={"spec": {}}, status="active"),
            ResourceRecord(Kind.VIRTUAL_MACHINE, "default", "c", "other", desired=spec, status="running", host="h2"),
        ]
    )
    store.save_resource_health(
        "web", [ResourceHealthRecord(Kind.VIRTUAL_MACHINE, "default", "b", "web", "degraded", "heal failed", 3)]
    )
    summaries = store.list_resource_summaries(stack="web")
    full = store.list_resources(stack="web")
    judged = {"b": ("degraded", "heal failed", 3)}
    assert summaries == [
        ResourceSummary(r.kind, r.namespace, r.name, r.stack, r.host, r.status, *judged.get(r.name, (None, None, 0)))
        for r in full
    ]
    assert len(summaries) == 3 and len(store.list_resource_summaries()) == 4
    first = store.begin_apply(stack="web", revision="r1", plan={"changes": [1, 2, 3]}, holder="t")
    store.finish_apply(first, state="succeeded", summary={"created": 3})
    (light,) = store.list_applies(stack="web", plans=False)
    (heavy,) = store.list_applies(stack="web")
    assert heavy.plan == {"changes": [1, 2, 3]} and light.plan == {}
    assert (light.id, light.state, light.summary, light.revision) == (first, "succeeded", {"created": 3}, "r1")
