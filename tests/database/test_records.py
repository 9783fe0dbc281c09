"""Monitoring samples, accounting history, hook runs, users, tokens, access rules and quotas, on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import DatabaseError, HookRunRecord, HostSampleRecord, QuotaRecord, Store, VMSampleRecord
from nebctl.database.records import HistoryOpening
from nebctl.database.telemetry import HOOK_OUTPUT_LIMIT
from tests.database.conftest import FakeClock

GIB = 2**30


def host_sample(clock: FakeClock, host: str, seconds: float, load: float, memory_used: int) -> HostSampleRecord:
    return HostSampleRecord(
        host=host,
        time=clock.now + timedelta(seconds=seconds),
        state="on",
        cpu_total=8,
        cpu_load=load,
        memory_total=32 * GIB,
        memory_used=memory_used,
        disk_total=500 * GIB,
        disk_used=100 * GIB,
        attributes={"zone": "a"},
    )


def vm_sample(clock: FakeClock, name: str, seconds: float, cpu: float, rx: int) -> VMSampleRecord:
    return VMSampleRecord(
        namespace="default",
        name=name,
        host="kvm1",
        time=clock.now + timedelta(seconds=seconds),
        state="running",
        cpu=cpu,
        memory_used=GIB,
        net_rx_bytes=rx,
    )


def test_samples_latest_downsample_and_prune(store: Store, clock: FakeClock) -> None:
    store.add_host_samples(
        [host_sample(clock, "kvm1", s, load=s / 60, memory_used=int(s) * GIB) for s in (0, 60, 120, 180)]
    )
    store.add_host_samples([host_sample(clock, "kvm2", 30, load=0.5, memory_used=GIB)])
    store.add_vm_samples([vm_sample(clock, "web-1", s, cpu=s, rx=int(s) * 10) for s in (0, 60, 120, 180)])

    latest = store.latest_host_samples()
    assert set(latest) == {"kvm1", "kvm2"}
    assert latest["kvm1"].time == clock.now + timedelta(seconds=180) and latest["kvm1"].attributes == {"zone": "a"}
    assert store.latest_vm_samples()[("default", "web-1")].cpu == 180
    assert len(store.host_samples(host="kvm1", since=clock.now + timedelta(seconds=60))) == 3

    # Fold the samples older than 150 s into 2-minute buckets: [0, 120) and [120, 240).
    folded = store.downsample_samples(before=clock.now + timedelta(seconds=150), bucket=timedelta(minutes=2))
    assert folded == 3 + 1 + 3
    kvm1 = store.host_samples(host="kvm1")
    assert [(s.resolution, s.cpu_load) for s in kvm1] == [(120, 0.5), (120, 2.0), (0, 3.0)]
    assert kvm1[0].memory_used == 30 * GIB  # mean of 0 and 60 GiB
    web = store.vm_samples(vm=ResourceKey(Kind.VIRTUAL_MACHINE, "default", "web-1"))
    assert [(s.resolution, s.cpu, s.net_rx_bytes) for s in web] == [(120, 30, 600), (120, 120, 1200), (0, 180, 1800)]
    # The newest sample is still the raw one, even though the folded rows were written after it.
    assert store.latest_host_samples()["kvm1"].time == clock.now + timedelta(seconds=180)

    assert store.prune_samples(clock.now + timedelta(seconds=100), resolution=0) == 0  # raw ones left are newer
    assert store.prune_samples(clock.now + timedelta(seconds=100)) == 1 + 1 + 1
    assert len(store.host_samples()) == 2 and len(store.vm_samples()) == 2


def test_accounting_history(store: Store, clock: FakeClock) -> None:
    web = ResourceKey(Kind.VIRTUAL_MACHINE, "default", "web-1")
    t0 = clock.now
    store.open_history(web, host="kvm1", vcpu=2, memory=2 * GIB, disk=20 * GIB, reason="deploy", stack="web")
    clock.advance(3600)
    store.open_history(web, host="kvm2", vcpu=2, memory=2 * GIB, disk=20 * GIB, reason="migrate", stack="web")
    clock.advance(1800)
    assert store.close_history(web, reason="delete") == 1
    assert store.close_history(web, reason="delete") == 0

    records = store.list_history(vm=web)
    assert [(r.host, r.started_at, r.ended_at, r.reason, r.end_reason) for r in records] == [
        ("kvm1", t0, t0 + timedelta(hours=1), "deploy", "migrate"),
        ("kvm2", t0 + timedelta(hours=1), clock.now, "migrate", "delete"),
    ]
    assert records[0].memory == 2 * GIB and records[0].stack == "web"
    # Records overlapping a window, and by host.
    assert [r.host for r in store.list_history(start=t0 + timedelta(minutes=80))] == ["kvm2"]
    assert [r.host for r in store.list_history(end=t0 + timedelta(minutes=30))] == ["kvm1"]
    assert [r.host for r in store.list_history(host="kvm2")] == ["kvm2"]


def test_accounting_history_in_bulk(store: Store, clock: FakeClock) -> None:
    """``open_histories`` (the executor's round) is ``open_history`` for many VMs at once."""
    web, db = ResourceKey(Kind.VIRTUAL_MACHINE, "default", "web-1"), ResourceKey(Kind.VIRTUAL_MACHINE, "team", "db-1")
    t0 = clock.now
    store.open_history(web, host="kvm1", vcpu=2, memory=2 * GIB, disk=20 * GIB, reason="create", stack="web")
    clock.advance(60)
    with store.batch() as tx:
        tx.open_histories(
            [
                HistoryOpening(web, host="kvm2", vcpu=4, memory=4 * GIB, disk=20 * GIB, reason="migrated", stack="web"),
                HistoryOpening(db, host="kvm1", vcpu=1, memory=GIB, disk=0, reason="create"),
            ]
        )
    records = store.list_history()
    assert [(r.name, r.host, r.started_at, r.ended_at, r.reason, r.end_reason, r.vcpu) for r in records] == [
        ("web-1", "kvm1", t0, clock.now, "create", "migrated", 2),
        ("web-1", "kvm2", clock.now, None, "migrated", None, 4),
        ("db-1", "kvm1", clock.now, None, "create", None, 1),
    ]
    assert [r.namespace for r in store.list_history(vm=db)] == ["team"]
    store.open_histories([])
    with pytest.raises(ValueError, match="each VM once"):
        store.open_histories([HistoryOpening(db, host="a", vcpu=1, memory=1, disk=0, reason="x")] * 2)


def test_hook_runs_are_recorded_and_truncated(store: Store) -> None:
    chatty = "x" * (HOOK_OUTPUT_LIMIT * 3)
    store.add_hook_run(HookRunRecord(hook="notify", event="vm.running", exit_code=0, duration=0.25, stdout="ok\n"))
    store.add_hook_run(
        HookRunRecord(hook="slow", event="apply.finished", exit_code=None, timed_out=True, duration=30.0, stderr=chatty)
    )
    runs = store.list_hook_runs()
    assert [r.hook for r in runs] == ["slow", "notify"]  # newest first
    assert runs[0].timed_out and runs[0].exit_code is None
    assert len(runs[0].stderr) == HOOK_OUTPUT_LIMIT and runs[0].stderr.endswith("characters cut]")
    assert runs[1].stdout == "ok\n" and runs[1].started_at is not None
    assert [r.hook for r in store.list_hook_runs(hook="notify")] == ["notify"]


def test_users_and_tokens(store: Store, clock: FakeClock) -> None:
    alice = store.create_user("alice", password_hash="$argon2id$v=19$...", groups=["ops", "dev"])
    assert alice.groups == ("ops", "dev") and alice.enabled
    with pytest.raises(DatabaseError, match="already exists"):
        store.create_user("alice")
    secret, token = store.create_token("alice", name="ci", expires_at=clock.now + timedelta(days=1))
    assert secret.startswith("nbt_") and token.user == "alice"
    assert all(secret not in str(t) for t in store.list_tokens())  # only its digest is kept

    verified = store.verify_token(secret)
    assert verified is not None and verified.id == token.id
    assert store.list_tokens(user="alice")[0].last_used_at == clock.now
    assert store.verify_token(secret + "x") is None

    store.update_user("alice", enabled=False)
    assert store.verify_token(secret) is None
    store.update_user("alice", enabled=True, groups=["ops"])
    assert store.get_user("alice") is not None and store.get_user("alice").groups == ("ops",)  # type: ignore[union-attr]
    clock.advance(86400)
    assert store.verify_token(secret) is None  # expired

    assert store.revoke_token(token.id) and not store.revoke_token(token.id)
    store.create_token("alice", name="other")
    assert store.delete_user("alice") and store.list_tokens() == [] and store.list_users() == []
    assert not store.delete_user("alice")


def test_access_rules_and_quotas(store: Store) -> None:
    rule = store.add_access_rule(subject_type="group", subject="ops", actions=["get", "apply"], kinds=["vm"])
    store.add_access_rule(subject_type="user", subject="bob", actions=["get"])
    rules = store.list_access_rules()
    assert rules[0] == rule and rule.actions == ("get", "apply") and rule.namespaces == ("*",)
    assert store.delete_access_rule(rule.id) and [r.subject for r in store.list_access_rules()] == ["bob"]
    with pytest.raises(ValueError, match="subject_type"):
        store.add_access_rule(subject_type="robot", subject="x", actions=["get"])

    store.set_quota(QuotaRecord("namespace", "team-a", vms=10, vcpu=20, memory=64 * GIB))
    store.set_quota(QuotaRecord("namespace", "team-a", vms=5))  # replaces the whole quota
    store.set_quota(QuotaRecord("group", "ops", disk=2**40))
    assert store.get_quota("namespace", "team-a") == QuotaRecord("namespace", "team-a", vms=5)
    assert [q.scope for q in store.list_quotas()] == ["ops", "team-a"]
    assert store.delete_quota("group", "ops") and store.get_quota("group", "ops") is None
