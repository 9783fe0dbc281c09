"""``dependsOn`` between VMs on different hosts, applied on the simulated fleet: in ``manifests/examples``,
``vm/cache-1`` (placed on kvm-b1) declares ``dependsOn: [vm/db-1]`` (placed on kvm-a1). cache-1 is built only
once db-1 is, and a permanent failure of db-1's deploy skips cache-1.
"""

from __future__ import annotations

from pathlib import Path

from nebctl.controller.applying.executing import Outcome
from nebctl.core.keys import ResourceKey
from nebctl.database.records import ApplyState
from nebctl.drivers.sim import Fault, FaultKind
from tests.support.drills import Workspace

DB = ResourceKey.parse("vm/db-1")
CACHE = ResourceKey.parse("vm/cache-1")


def _hosts(workspace: Workspace) -> dict[ResourceKey, str | None]:
    with workspace.store() as store:
        return {change.key: change.host for change in workspace.plan(store).plan.changes}


def test_the_examples_place_the_pair_on_two_hosts(tmp_path: Path) -> None:
    # The premise of the tests below: the dependency crosses hosts.
    hosts = _hosts(Workspace(tmp_path / "ws", stack="examples"))
    assert hosts[DB] == "kvm-a1" and hosts[CACHE] == "kvm-b1"


def test_cache_1_is_built_after_db_1(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws", stack="examples")
    workspace.set_latency(0.005, 0.01)
    with workspace.store() as store:
        result = workspace.controller(store).apply(workspace.plan(store), parallelism=16)
    assert result.state == ApplyState.SUCCEEDED
    reports = list(result.report.reports.values())
    db_done = max(r.finished or 0.0 for r in reports if r.action.key == DB)
    cache_started = min(r.started or float("inf") for r in reports if r.action.key == CACHE)
    assert db_done <= cache_started, (db_done, cache_started)


def test_a_permanent_failure_of_db_1_skips_cache_1_on_another_host(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws", stack="examples")
    with workspace.fleet() as fleet:
        fleet.set_fault(Fault("virtualization.deploy", FaultKind.PERMANENT, host="kvm-a1", message="no KVM"))
    with workspace.store() as store:
        result = workspace.controller(store).apply(workspace.plan(store))
        reports = result.report.reports
        assert result.state == ApplyState.PARTIAL
        assert reports["vm/db-1:deploy"].state is Outcome.FAILED
        cache = [r for r in reports.values() if r.action.key == CACHE]
        assert cache
        for report in cache:
            assert report.state is Outcome.SKIPPED, (report.action.id, report.state)
            assert report.blocked_by == "vm/db-1:deploy", report.blocked_by
        # Another VM on kvm-b1 that depends on nothing on kvm-a1 is built: only the dependent is held back.
        others = {r.action.key for r in reports.values() if r.action.host == "kvm-b1" and r.action.key != CACHE}
        built = {
            r.action.key for r in reports.values() if r.action.operation == "deploy" and r.state is Outcome.SUCCEEDED
        }
        assert others & built
        # Nothing of cache-1 ran, so nothing of it is recorded as applied.
        records = {r.key: r for r in store.list_resources(stack="examples")}
        assert CACHE not in records or records[CACHE].applied is None
