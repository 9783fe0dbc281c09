"""Kept plan traces (``controller.kept_traces``) end to end: real ``nebctl`` processes on the simulated fleet and
SQLite.

A ``diff`` or ``apply`` that plans everything keeps its plan's trace; the next one, after an edit of some
manifests, plans only what moved from there (``-v`` says so). The statement of what is right is a ``diff`` with the
caches turned off (``manifest_cache: false``) on a copy of the same database and fleet (``World.uncached_diff``):
whatever was edited, rewritten, written by hand or broken in the cache, the output must be that one's.
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nebctl.controller import kept_traces
from nebctl.controller.kept_traces import KeptTraces
from nebctl.controller.planning import PlanRequest, plan_again
from nebctl.core.keys import ResourceKey
from nebctl.database.store import Store
from nebctl.reconcilers.base import LiveView
from tests.integration.cli.test_commands import SECRET
from tests.integration.cli.test_kept_plans import EDITS, World, _do

FROM_TRACE = "made from the last one's trace"


@pytest.fixture()
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    world = World(tmp_path_factory.mktemp("traces"))
    applied = world.run("apply", "-f", str(world.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return world


def planned(world: World, *args: str) -> tuple[int, str, bool]:
    """A ``diff`` now, checked against the uncached diff of the same state: its exit code and output, and whether
    it was made from the kept trace."""
    truth = world.uncached_diff(*args)
    result = world.run("-v", "diff", "-f", str(world.manifests), *args)
    assert (result.returncode, result.stdout) == truth, result.stderr
    return result.returncode, result.stdout, FROM_TRACE in result.stderr


def traces(world: World) -> list[bytes]:
    return [entry.read_bytes() for entry in (world.root / "cache" / "traces").glob("*/*")]


def test_an_edit_is_planned_from_the_trace_of_the_last_whole_plan(world: World) -> None:
    assert planned(world)[0::2] == (0, False)  # the apply moved the records: planned whole, its trace kept
    assert len(traces(world)) == 2  # the trace, and the state of the database it holds for
    world.vms_file.write_text(world.original.replace("memory: 2Gi", "memory: 3Gi", 1))
    code, out, from_trace = planned(world)
    assert (code, from_trace) == (2, True) and "to change" in out
    # The trace is left as it was (a plan made from it keeps none): a second edit is compared with it too.
    world.vms_file.write_text(world.original.replace("vcpu: 2", "vcpu: 3", 1))
    assert planned(world)[0::2] == (2, True)
    applied = world.run("-v", "apply", "-f", str(world.manifests), "--yes")
    assert applied.returncode == 0 and FROM_TRACE in applied.stderr
    # The apply rewrote records: the trace names them (their rows' digests moved) and they are planned again.
    assert planned(world)[0::2] == (0, True)


def test_a_plan_that_observed_the_fleet_again_leaves_the_trace_valid(world: World) -> None:
    # A diff after the fleet moved observes it and keeps what it saw (a write to the database); made from the
    # trace, it writes nothing else, so the next edit is planned from the trace too.
    planned(world)
    assert world.run("sim", "stop-vm", "web-2").returncode == 0
    assert planned(world)[0::2] == (2, True)
    world.vms_file.write_text(world.original.replace("memory: 2Gi", "memory: 3Gi", 1))
    assert planned(world)[0::2] == (2, True)


def test_a_plan_on_a_fresh_view_hands_it_to_the_trace(world: World) -> None:
    """An observation older than its usage figures may be: the next ``diff`` probes each host again, not its VMs.
    The hosts' usage figures moved, which a VM that stays where it is does not read: no VM is placed again. The
    trace then takes that view, and the plans on it (the kept observation) compare nothing of it."""
    planned(world)  # whole: the trace kept
    # A label: nothing placement reads.
    world.vms_file.write_text(world.original.replace("tier: edge", "tier: front", 1))
    result = world.run("-v", "diff", "-f", str(world.manifests))
    assert FROM_TRACE in result.stderr and "observation is reused" in result.stderr  # the apply's observation
    assert "every VM placed again" not in result.stderr  # the very view the trace was made from
    config = world.config
    aged = world.root / "aged.yaml"  # as if the user came back later: any kept observation is older than this
    aged.write_text(config.read_text() + "observation_max_age: 0\n")
    world.config = aged
    try:
        truth = world.uncached_diff()
        result = world.run("-v", "diff", "-f", str(world.manifests))
    finally:
        world.config = config
    assert (result.returncode, result.stdout) == truth, result.stderr
    assert FROM_TRACE in result.stderr and "observation is reused" not in result.stderr
    assert "the hosts' own probes made again" in result.stderr and "0 of 4 host(s) probed again whole" in result.stderr
    assert "every VM placed again" not in result.stderr  # only the sim's usage figures moved
    for _ in range(2):
        code, _, from_trace = planned(world)
        assert (code, from_trace) == (2, True)
        result = world.run("-v", "diff", "-f", str(world.manifests))
        assert "observation is reused" in result.stderr and "every VM placed again" not in result.stderr


def test_a_diff_after_an_apply_probes_again_only_the_hosts_it_acted_on(world: World) -> None:
    """An apply moves the fleet, but only on the hosts it acted on: the next ``diff`` probes those again and takes
    the others as its last observation saw them (their drivers' word did not move). Its output is the uncached
    diff's, and so is the output after a VM on one other host was stopped behind nebctl's back."""
    planned(world)  # whole: its observation kept, with each host's word
    world.vms_file.write_text(world.original.replace("tier: edge", "tier: front", 1))  # one VM's label
    applied = world.run("apply", "-f", str(world.manifests), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    truth = world.uncached_diff()
    result = world.run("-v", "diff", "-f", str(world.manifests))
    assert (result.returncode, result.stdout) == truth == (0, truth[1]), result.stderr
    assert "1 of 4 host(s) probed again" in result.stderr and FROM_TRACE in result.stderr

    assert world.run("sim", "stop-vm", "web-2").returncode == 0
    truth = world.uncached_diff()
    result = world.run("-v", "diff", "-f", str(world.manifests))
    assert (result.returncode, result.stdout) == truth, result.stderr
    assert truth[0] == 2 and "web-2" in truth[1]  # stopped outside: its drift shown
    assert "1 of 4 host(s) probed again" in result.stderr


def test_no_secret_is_kept_in_a_trace(world: World) -> None:
    planned(world)
    assert SECRET.encode() not in b"".join(traces(world))
    # Its VM is planned again each time (its resolved spec holds the secret in clear, so none of it is kept).
    world.vms_file.write_text(world.original.replace(SECRET, SECRET + "-new"))
    assert planned(world)[2]
    world.run("apply", "-f", str(world.manifests), "--yes")
    planned(world)  # whole again, with the new secret
    assert SECRET.encode() not in b"".join(traces(world))


def test_secrets_are_put_back_from_the_manifests_and_never_written(world: World) -> None:
    # web-1, whose cloud-init data holds the secret, in a file of its own: an edit of the other VMs leaves its
    # manifest's stamp as it was, so its results come from the trace, its secret put back from its manifest.
    documents = world.original.split("\n---\n")
    [web] = [document for document in documents if "name: web-1\n" in document]
    others = "\n---\n".join(document for document in documents if document is not web)
    (world.manifests / "31-web.yaml").write_text(web)
    world.vms_file.write_text(others)
    assert planned(world)[0::2] == (0, False)  # a new set of files: planned whole, its trace kept
    assert SECRET.encode() not in b"".join(traces(world))
    vms = others.count("kind: VirtualMachine")
    world.vms_file.write_text(others.replace("memory: 2Gi", "memory: 3Gi", 1))
    result = world.run("-v", "diff", "-f", str(world.manifests))
    assert (result.returncode, result.stdout) == world.uncached_diff() and result.returncode == 2
    # The other VMs are planned again (a file's documents all get a new stamp), and only they.
    assert f"{vms} resource(s) planned again" in result.stderr, result.stderr
    applied = world.run("-v", "apply", "-f", str(world.manifests), "--yes")
    assert applied.returncode == 0 and FROM_TRACE in applied.stderr
    assert world.run("sim", "show").stdout.count("web-1") >= 1  # the apply went through with web-1 untouched
    assert planned(world)[0::2] == (0, True)


def test_a_file_rewritten_in_the_same_second_at_the_same_size_is_planned(world: World) -> None:
    planned(world)
    edited = world.original.replace("vcpu: 2", "vcpu: 3", 1)
    assert len(edited) == len(world.original)
    world.rewrite_same_second(edited)
    code, out, from_trace = planned(world)
    assert (code, from_trace) == (2, True) and "vcpu" in out


def test_records_written_by_hand_are_planned_again(world: World) -> None:
    planned(world)
    with sqlite3.connect(world.root / "nebctl.db") as database:
        changed = database.execute(
            "UPDATE resources SET applied = replace(applied, '\"vcpu\": 2', '\"vcpu\": 12') WHERE name = 'web-1'"
        ).rowcount
        assert changed == 1
    world.vms_file.write_text(world.original.replace("memory: 2Gi", "memory: 3Gi", 1))
    assert planned(world)[0::2] == (2, True)  # from the trace, web-1's row named as moved


def test_a_record_more_makes_the_plan_whole(world: World) -> None:
    planned(world)
    (world.manifests / "90-host.yaml").write_text(
        "apiVersion: nebctl/v1\nkind: Host\nmetadata: {name: h9}\nspec: {uri: 'sim://h9'}\n"
    )
    assert world.run("apply", "-f", str(world.manifests), "--yes").returncode == 0
    assert planned(world)[0::2] == (0, False)  # the records' keys moved: planned whole, its trace kept


def test_a_corrupt_or_truncated_trace_is_ignored(world: World) -> None:
    planned(world)
    # The larger of the two entries is the trace; the other is the state of the database it holds for.
    entry = max((world.root / "cache" / "traces").glob("*/*"), key=lambda path: path.stat().st_size)
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])
    world.vms_file.write_text(world.original.replace("memory: 2Gi", "memory: 3Gi", 1))
    assert planned(world)[0::2] == (2, False)  # planned whole, which keeps its trace again
    assert planned(world)[0::2] == (2, True)
    flipped = bytearray(entry.read_bytes())
    flipped[-10] ^= 0xFF
    entry.write_bytes(bytes(flipped))
    assert planned(world)[0::2] == (2, False)


def test_a_trace_kept_by_another_version_is_never_found(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(world.db)
    try:
        directory = world.root / "kept"
        versions = store.change_versions()
        request = PlanRequest(stack="demo", documents={}, records={}, live=LiveView())
        _, _, trace = plan_again(request, None)
        assert trace is not None
        stamps: dict[ResourceKey, str] = {}
        monkeypatch.setattr(kept_traces, "code_digest", lambda: b"another version")
        assert KeptTraces(directory, database=world.db).keep("demo", trace, stamps, versions, store)
        assert KeptTraces(directory, database=world.db).find("demo", versions, store, {}, stamps) is not None
        monkeypatch.undo()
        assert KeptTraces(directory, database=world.db).find("demo", versions, store, {}, stamps) is None
    finally:
        store.close()


# --- property: for random edits, a plan from a kept trace shows what planning everything shows -----------------

LABELS = ["edit-label", "edit-label-2"]


@settings(
    max_examples=6,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=st.lists(st.one_of(EDITS, st.sampled_from(LABELS)), min_size=2, max_size=6))
def test_a_plan_from_a_kept_trace_always_agrees_with_planning(
    tmp_path_factory: pytest.TempPathFactory, edits: list[str]
) -> None:
    world = World(tmp_path_factory.mktemp("traced"))
    assert world.run("apply", "-f", str(world.manifests), "--yes").returncode == 0
    planned(world)
    for edit in edits:
        if edit in LABELS:
            label = "blue" if edit == "edit-label" else "green"
            world.vms_file.write_text(world.vms_file.read_text().replace("tier: web", f"tier: {label}", 1))
        else:
            _do(world, edit)
        planned(world)  # asserts the agreement
