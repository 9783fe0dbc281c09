"""``controller.kept_traces.KeptTraces`` on a real SQLite store: a kept trace is found with the records that are not
those it was made from, and not found once a record was added or removed; the secrets of its resolved specs are
never written, and come back from the manifests."""

from __future__ import annotations

import dataclasses
import pickle
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from nebctl.controller.kept_traces import KeptTraces
from nebctl.controller.planning import PlanRequest, PlanTrace, fingerprint, plan_again
from nebctl.core.deferred import DeferredPart
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Plan
from nebctl.database import Store, record_rows
from nebctl.database.records import ResourceRecord
from nebctl.drivers.states import VMLiveState
from nebctl.reconcilers.base import LiveView
from nebctl.schemas import caching
from nebctl.schemas.caching import load_paths_cached
from nebctl.schemas.models import AnyManifest
from tests.support.decoding import decoded_records

from .world import BASE, World, converge, documents, key, vm

SECRET = "#cloud-config\npassword: kept-trace-secret"
CLOUD_INIT = '  placement: {host: h1}\n  cloudInit: {userData: "#cloud-config\\npassword: kept-trace-secret"}'


def _traced(*texts: str) -> tuple[PlanTrace, dict[ResourceKey, AnyManifest], dict[ResourceKey, str]]:
    world = converge(*texts)
    request = world.request()
    _, _, trace = plan_again(request, None)
    assert trace is not None
    return trace, dict(request.documents), {document: f"text of {document}" for document in request.documents}


def _written(tmp_path: Path) -> bytes:
    """Every byte kept: the trace and the state of the database it holds for."""
    entries = sorted((tmp_path / "traces").glob("*/*"))
    assert len(entries) == 2
    return b"".join(entry.read_bytes() for entry in entries)


def _kept_and_found(
    tmp_path: Path,
    store: Store,
    trace: PlanTrace,
    manifests: dict[ResourceKey, AnyManifest],
    stamps: dict[ResourceKey, str],
) -> tuple[KeptTraces, PlanTrace]:
    """``trace`` kept, with no secret in what was written, and found again as the next process finds it."""
    kept = KeptTraces(tmp_path / "traces", database="db")
    versions = store.change_versions()
    assert kept.keep("demo", trace, stamps, versions, store)
    assert b"kept-trace-secret" not in _written(tmp_path)
    found = kept.find("demo", versions, store, manifests, stamps)
    assert found is not None and found.stamped is not None
    return kept, found


def _planned_from(
    trace: PlanTrace, request: PlanRequest, store: Store, stamps: dict[ResourceKey, str]
) -> tuple[Plan, PlanTrace]:
    """The plan of ``request`` on the store's records, made from ``trace`` (not whole), and its trace; the plan is
    the whole plan's, made from every record decoded."""
    request = dataclasses.replace(request, records=store.record_rows())
    plan, _, made = plan_again(request, trace, stamps)
    assert made is not None and made.replanned is not None  # made from the trace, not whole
    whole, _, _ = plan_again(dataclasses.replace(request, records=dict(store.record_rows())), None)
    assert (plan.changes, plan.actions, plan.edges) == (whole.changes, whole.actions, whole.edges)
    return plan, made


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}")
    yield opened
    opened.close()


def test_secrets_are_never_written_and_come_back_from_the_manifests(tmp_path: Path, store: Store) -> None:
    trace, manifests, stamps = _traced(BASE, vm("web", **{"  placement: {host: h1}": CLOUD_INIT}), vm("db"))
    web = key("vm/web")
    assert trace.specs[web]["cloudInit"]["userData"] == SECRET
    kept, found = _kept_and_found(tmp_path, store, trace, manifests, stamps)
    assert found.stamped is not None
    assert found.specs == trace.specs  # the secret put back, every other spec as it was
    assert found.observed == trace.observed
    assert web not in found.stamped.unkept

    # Its manifest read from other text: it is planned again, so its secret is not put back (nor read).
    edited = kept.find("demo", store.change_versions(), store, manifests, {**stamps, web: "other text"})
    assert edited is not None and edited.specs[web]["cloudInit"]["userData"] != SECRET


def test_a_secret_in_a_change_leaves_its_resource_out(tmp_path: Path, store: Store) -> None:
    world = converge(BASE, vm("web"))
    request = world.request()
    grown = documents(BASE, vm("web", **{"  placement: {host: h1}": CLOUD_INIT, "vcpu: 2": "vcpu: 4"}))
    request = dataclasses.replace(request, documents=grown)
    _, _, trace = plan_again(request, None)
    assert trace is not None
    _, found = _kept_and_found(tmp_path, store, trace, grown, {document: "text" for document in grown})
    assert found.stamped is not None
    assert key("vm/web") in found.stamped.unkept and key("vm/web") not in found.specs


def test_a_trace_is_found_with_the_records_that_moved_since_it_was_kept(tmp_path: Path, store: Store) -> None:
    world = converge(BASE, vm("web"), vm("db"))
    store.save_resources(list(world.records.values()))
    trace, manifests, stamps = _traced(BASE, vm("web"), vm("db"))
    kept = KeptTraces(tmp_path / "traces", database="db")
    assert kept.keep("demo", trace, stamps, store.change_versions(), store)

    web, db = key("vm/web"), key("vm/db")
    store.save_resource(dataclasses.replace(world.records[web], status="updating"))  # as an apply writes it
    found = kept.find("demo", store.change_versions(), store, manifests, stamps)
    assert found is not None and found.stamped is not None and found.stamped.moved == {web}

    # Edited by hand, which raises no counter: the row's digest still tells.
    with sqlite3.connect(tmp_path / "nebctl.db") as connection:
        connection.execute("UPDATE resources SET host = 'h2' WHERE name = 'db'")
    found = kept.find("demo", store.change_versions(), store, manifests, stamps)
    assert found is not None and found.stamped is not None and found.stamped.moved == {web, db}

    # A record more, or one less: the trace is not used.
    store.save_resource(ResourceRecord(Kind.HOST, "default", "h9", stack="demo"))
    assert kept.find("demo", store.change_versions(), store, manifests, stamps) is None
    store.delete_resource(ResourceKey.of(Kind.HOST, "h9"))
    store.delete_resource(db)
    assert kept.find("demo", store.change_versions(), store, manifests, stamps) is None


def test_the_records_that_moved_are_told_from_the_rows_the_plan_read_in_one_query(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = converge(BASE, vm("web"), vm("db"))
    store.save_resources(list(world.records.values()))
    trace, manifests, stamps = _traced(BASE, vm("web"), vm("db"))
    kept = KeptTraces(tmp_path / "traces", database="db")
    assert kept.keep("demo", trace, stamps, store.change_versions(), store, rows=store.record_rows())
    web = key("vm/web")
    store.save_resource(dataclasses.replace(world.records[web], status="updating"))  # as an apply writes it
    versions, rows = store.change_versions(), store.record_rows()

    def read_again() -> None:
        raise AssertionError("the table was read again")

    with monkeypatch.context() as patched:
        patched.setattr(store, "record_rows", read_again)
        found = kept.find("demo", versions, store, manifests, stamps, rows=rows)
    assert found is not None and found.stamped is not None and found.stamped.moved == {web}
    # The digests kept from the plan's rows are those of the rows read again: the same answer either way.
    found = kept.find("demo", versions, store, manifests, stamps)
    assert found is not None and found.stamped is not None and found.stamped.moved == {web}


def test_a_trace_is_found_only_while_the_records_are_those_it_read(tmp_path: Path, store: Store) -> None:
    trace, manifests, stamps = _traced(BASE, vm("web"))
    kept = KeptTraces(tmp_path / "traces", database="db")
    versions = store.change_versions()
    assert kept.keep("demo", trace, stamps, versions, store)
    assert kept.find("demo", versions, store, manifests, stamps) is not None
    assert kept.find("other", versions, store, manifests, stamps) is None  # another stack's
    assert KeptTraces(tmp_path / "traces", database="another").find("demo", versions, store, manifests, stamps) is None
    store.save_resource(ResourceRecord(Kind.HOST, "default", "h9", stack="demo"))
    assert kept.find("demo", store.change_versions(), store, manifests, stamps) is None


def test_a_deleted_resource_whose_record_holds_a_secret_in_clear_is_left_out(tmp_path: Path, store: Store) -> None:
    # A record written by a nebctl from before secrets were sealed holds its secret in clear; its manifest gone,
    # the plan deletes it (and lists what it held): nothing of it may be written.
    world = converge(BASE, vm("web", **{"  placement: {host: h1}": CLOUD_INIT}), vm("db"))
    web = key("vm/web")
    applied = world.records[web].applied
    assert applied is not None and applied["cloudInit"]["userData"] == SECRET
    remaining = {k: d for k, d in world.documents.items() if k != web}
    request = dataclasses.replace(world.request(), documents=remaining, prune=True)
    _, _, trace = plan_again(request, None)
    assert trace is not None and trace.outcomes[web][0] is not None
    _, found = _kept_and_found(tmp_path, store, trace, remaining, {document: "text" for document in remaining})
    assert found.stamped is not None and web in found.stamped.unkept


def test_a_plan_that_only_kept_what_it_observed_leaves_the_trace_valid(tmp_path: Path, store: Store) -> None:
    trace, manifests, stamps = _traced(BASE, vm("web"))
    kept = KeptTraces(tmp_path / "traces", database="db")
    before = store.change_versions()
    assert kept.keep("demo", trace, stamps, before, store)
    store.record_observations([], probed=["h1"])  # raises the counters, changes no record
    after = store.change_versions()
    found = kept.find("demo", after, store, manifests, stamps)  # each row compared: none moved
    assert after != before and found is not None and found.stamped is not None and not found.stamped.moved
    assert not kept.advance("demo", after, after, store)  # not from the counters it holds at
    assert kept.advance("demo", before, after, store)  # the next finds it without comparing the rows
    assert kept.find("demo", after, store, manifests, stamps) is not None
    # A record written since: the counters moved past what the caller says; nothing is advanced.
    store.save_resource(ResourceRecord(Kind.HOST, "default", "h9", stack="demo"))
    assert not kept.advance("demo", after, after, store)
    assert kept.find("demo", store.change_versions(), store, manifests, stamps) is None


def test_a_trace_advanced_as_its_plan_read_it_is_not_checked_against_the_table_again(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan read the trace, and found the table as kept, at the counters it advances from; only its own writing
    came since. Another state (a trace kept meanwhile) is checked again."""
    trace, manifests, stamps = _traced(BASE, vm("web"))
    kept = KeptTraces(tmp_path / "traces", database="db")
    before = store.change_versions()
    assert kept.keep("demo", trace, stamps, before, store)
    read = kept.read("demo", before, store)
    assert read is not None and read.holds
    store.record_observations([], probed=["h1"])
    after = store.change_versions()
    summaries: list[int] = []
    real = Store.resources_stamp

    def summary(opened: Store) -> tuple[object, ...]:
        summaries.append(1)
        return real(opened)

    monkeypatch.setattr(Store, "resources_stamp", summary)
    assert kept.advance("demo", before, after, store, read=read) and summaries == []
    assert kept.find("demo", after, store, manifests, stamps) is not None
    assert kept.keep("demo", trace, stamps, after, store)  # another trace, another state: the read is not its
    summaries.clear()
    store.record_observations([], probed=["h1"])
    assert kept.advance("demo", after, store.change_versions(), store, read=read) and summaries == [1]


def test_what_a_trace_holds_of_each_manifest_and_record_is_read_back_as_kept_and_only_when_asked(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = converge(BASE, vm("web"), vm("db"))
    store.save_resources(list(world.records.values()))
    trace, manifests, stamps = _traced(BASE, vm("web"), vm("db"))
    assert trace.request is not None
    _, found = _kept_and_found(tmp_path, store, trace, manifests, stamps)
    assert found.stamped is not None
    loads: list[bytes] = []
    real = pickle.loads

    def counted(data: bytes) -> object:
        loads.append(data)
        return real(data)

    monkeypatch.setattr(pickle, "loads", counted)  # the module kept_traces reads its values back with
    web = key("vm/web")
    reconciler = trace.request.reconcilers[Kind.VIRTUAL_MACHINE]
    # Each value equals what the reconciler reads of the manifest now (the trace was made from these manifests).
    assert found.stamped.inputs[web] == reconciler.shared_inputs(manifests[web])
    assert len(loads) == 1  # the one value asked for, not the others
    assert set(found.stamped.inputs) == set(manifests)
    assert found.stamped.records.get(web) is not None and len(loads) == 2
    assert found.stamped.records.get(ResourceKey.of(Kind.VIRTUAL_MACHINE, "absent")) is None


def test_a_plan_from_a_kept_trace_reads_only_the_records_it_plans_again(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [BASE, *(vm(f"vm{n}") for n in range(8))]
    world = converge(*texts)
    store.save_resources(list(world.records.values()))
    trace, manifests, stamps = _traced(*texts)
    _, found = _kept_and_found(tmp_path, store, trace, manifests, stamps)
    # One VM's label edited: its stamp moves, and only it is planned again.
    edited = documents(BASE, *(vm(f"vm{n}", **({"app: web": "app: db"} if n == 3 else {})) for n in range(8)))
    vm3 = key("vm/vm3")
    decoded = decoded_records(monkeypatch)
    request = dataclasses.replace(world.request(edited), records=store.record_rows())
    plan, _, _ = plan_again(request, found, {**stamps, vm3: "edited text"})
    assert decoded == ["vm3"]
    # The plan is the whole plan's, made from every record decoded.
    whole, _, _ = plan_again(dataclasses.replace(request, records=dict(store.record_rows())), None)
    assert (plan.changes, plan.actions, plan.edges) == (whole.changes, whole.actions, whole.edges)
    assert [change.key for change in plan.changes if change.is_change] == [vm3]


def test_a_fingerprint_reads_no_record_and_no_document_back(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint an apply records is made of each record's stack, applied digest and status and of each
    document's digest: the rows and the manifest cache's entries hold them, so nothing is read back for it, and it
    is the fingerprint of the same records and documents held in dicts."""
    texts = [BASE, *(vm(f"vm{n}") for n in range(4))]
    world = converge(*texts)
    # As the journal stores them: with the digest of their applied spec.
    hashed = [dataclasses.replace(r, applied_hash=f"{n:064x}") for n, r in enumerate(world.records.values())]
    store.save_resources(hashed)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for index, text in enumerate(texts):
        (manifests / f"{index}.yaml").write_text(text)
    load_paths_cached([manifests], tmp_path / "cache")  # parsed and kept
    loaded = load_paths_cached([manifests], tmp_path / "cache")  # read from the cache
    plain = dataclasses.replace(
        world.request(dict(loaded.documents)), records={r.key: r for r in store.list_resources()}
    )
    read: list[object] = []
    monkeypatch.setattr(record_rows, "record_of", read.append)
    monkeypatch.setattr(caching._File, "documents", read.append)
    lazy = dataclasses.replace(plain, documents=loaded.documents, records=store.record_rows())
    assert fingerprint(lazy) == fingerprint(plain)
    assert read == []


def test_a_plan_from_a_kept_trace_and_the_view_it_read_builds_no_spec_and_compares_no_live_state(
    tmp_path: Path, store: Store
) -> None:
    """The specs, observed states and live view a trace holds are built only when read. A plan made from it after
    an edit of one VM reads none of them when its live view is the very one the trace read (the same identity: a
    kept observation); with another view, it compares what it reads of it, and plans again the VM that stopped."""
    texts = [BASE, *(vm(f"vm{n}") for n in range(8))]
    world = converge(*texts)
    store.save_resources(list(world.records.values()))
    view = dataclasses.replace(world.live, identity=b"view one")
    request = dataclasses.replace(world.request(), live=view)
    _, _, trace = plan_again(request, None)
    assert trace is not None
    stamps = {document: f"text of {document}" for document in request.documents}
    kept, found = _kept_and_found(tmp_path, store, trace, dict(request.documents), stamps)
    assert found.stamped is not None and found.stamped.observation == b"view one"
    edited = documents(BASE, *(vm(f"vm{n}", **({"app: web": "app: db"} if n == 3 else {})) for n in range(8)))
    vm3, vm5 = key("vm/vm3"), key("vm/vm5")
    again = {**stamps, vm3: "edited text"}

    def planned(live: LiveView, trace: PlanTrace) -> Plan:
        return _planned_from(trace, dataclasses.replace(world.request(edited), live=live), store, again)[0]

    plan = planned(view, found)
    assert [change.key for change in plan.changes if change.is_change] == [vm3]
    assert isinstance(found.specs, DeferredPart) and not found.specs.read
    assert not found.stamped.seen.read
    # Another view (another observation), where vm5 stopped: compared, and vm5 is planned again (started).
    stopped = dataclasses.replace(world.with_vm(vm5, state=VMLiveState.STOPPED).live, identity=b"view two")
    again_found = kept.find("demo", store.change_versions(), store, dict(request.documents), stamps)
    assert again_found is not None and again_found.stamped is not None
    plan = planned(stopped, again_found)
    assert again_found.stamped.seen.read
    assert {change.key for change in plan.changes if change.is_change} == {vm3, vm5}


def _six_vms_kept(
    tmp_path: Path, store: Store
) -> tuple[World, PlanRequest, dict[ResourceKey, str], KeptTraces, PlanTrace]:
    """Six VMs on the store, their whole plan's trace (on a view called ``one``) kept and found again."""
    world = converge(BASE, *(vm(f"vm{n}") for n in range(6)))
    store.save_resources(list(world.records.values()))
    request = dataclasses.replace(world.request(), live=dataclasses.replace(world.live, identity=b"one"))
    _, _, trace = plan_again(request, None)
    assert trace is not None
    stamps = {document: f"text of {document}" for document in request.documents}
    kept, found = _kept_and_found(tmp_path, store, trace, dict(request.documents), stamps)
    return world, request, stamps, kept, found


def test_a_trace_advanced_to_a_view_where_only_the_hosts_probes_moved_compares_nothing_of_it(
    tmp_path: Path, store: Store
) -> None:
    """A view where a host's probe moved (a fresh probe, the host grown): every VM is placed again, as before, so
    the trace's results hold for that view (``view_holds``). Advanced to it, the trace is found with it, and the
    next plan on it (a kept observation: the same identity) neither compares it nor places any VM again. A view
    where a VM moved does not hold: the VM's results in the trace are the old view's."""
    world, request, stamps, kept, found = _six_vms_kept(tmp_path, store)
    edited = documents(BASE, *(vm(f"vm{n}", **({"app: web": "app: db"} if n == 1 else {})) for n in range(6)))
    again = {**stamps, key("vm/vm1"): "edited text"}
    h1 = world.live.hosts["h1"]
    busier = {**world.live.hosts, "h1": dataclasses.replace(h1, cpus=h1.cpus * 2, cpu_usage=0.9, free_memory=1)}
    two = dataclasses.replace(world.live, hosts=busier, identity=b"two")

    def planned(live: LiveView, trace: PlanTrace) -> PlanTrace:
        return _planned_from(trace, dataclasses.replace(world.request(edited), live=live), store, again)[1]

    made = planned(two, found)
    assert made.replanned is not None and made.replanned.placing and made.replanned.view_holds
    versions = store.change_versions()
    assert kept.advance("demo", versions, versions, store, two)
    advanced = kept.find("demo", versions, store, dict(request.documents), stamps)
    assert advanced is not None and advanced.stamped is not None and advanced.stamped.observation == b"two"
    made = planned(two, advanced)
    assert made.replanned is not None and not made.replanned.placing  # compared nothing: the very view
    assert not advanced.stamped.seen.read
    # The view advanced to is what a fresh view is compared with: h1's figures as in view two, vm3 stopped.
    stopped = dataclasses.replace(world.with_vm(key("vm/vm3"), state=VMLiveState.STOPPED).live, hosts=busier)
    made = planned(dataclasses.replace(stopped, identity=b"three"), advanced)
    assert made.replanned is not None and not made.replanned.placing and not made.replanned.view_holds
    assert key("vm/vm3") in made.replanned.keys
    # Advanced without a view, it keeps the one it had.
    assert kept.advance("demo", versions, versions, store)
    found_again = kept.find("demo", versions, store, dict(request.documents), stamps)
    assert found_again is not None and found_again.stamped is not None
    assert found_again.stamped.observation == b"two"


def test_a_trace_whose_records_moved_still_takes_the_view_its_plan_found_holding(tmp_path: Path, store: Store) -> None:
    """After an apply (a record written since the trace was kept), a plan on a fresh view where only the hosts'
    probes moved places every VM again, as before. Advanced to that view, the trace keeps its own counters (the
    next plan tells the written record from its row again) and compares nothing of the view: the plans after an
    apply, on a kept observation, do not place every VM again each time."""
    world, request, stamps, kept, _ = _six_vms_kept(tmp_path, store)
    vm2 = key("vm/vm2")
    store.save_resource(dataclasses.replace(world.records[vm2], generation=7))  # as an apply writes it
    versions = store.change_versions()
    read = kept.read("demo", versions, store)
    assert read is not None and not read.holds
    h1 = world.live.hosts["h1"]
    busier = {**world.live.hosts, "h1": dataclasses.replace(h1, cpus=h1.cpus * 2, cpu_usage=0.9, free_memory=1)}
    two = dataclasses.replace(world.live, hosts=busier, identity=b"two")

    def planned(live: LiveView) -> PlanTrace:
        found = kept.find("demo", versions, store, dict(request.documents), stamps)
        assert found is not None and found.stamped is not None and found.stamped.moved == {vm2}
        return _planned_from(found, dataclasses.replace(world.request(), live=live), store, stamps)[1]

    made = planned(two)
    assert made.replanned is not None and made.replanned.placing and made.replanned.view_holds
    assert not kept.advance("demo", versions, versions, store, two)  # not said to be the state the plan read
    assert kept.advance("demo", versions, versions, store, two, read=read)
    made = planned(two)  # the moved record still told from its row, and planned again
    assert made.replanned is not None and not made.replanned.placing and vm2 in made.replanned.keys

    # Another writer after the plan, or a state the plan did not read: the view is not taken.
    again = kept.read("demo", versions, store)
    assert again is not None
    three = dataclasses.replace(two, identity=b"three")
    store.save_resource(ResourceRecord(Kind.HOST, "default", "h9", stack="demo"))
    assert not kept.advance("demo", versions, versions, store, three, read=again)
    assert not kept.advance("demo", versions, store.change_versions(), store, three, read=read)
    state = kept.read("demo", store.change_versions(), store)
    assert state is not None and state.state.observation == b"two"


def test_the_records_a_plan_told_moved_go_with_the_trace_state_until_someone_writes(
    tmp_path: Path, store: Store
) -> None:
    world = converge(BASE, vm("web"), vm("db"))
    store.save_resources(list(world.records.values()))
    request = dataclasses.replace(world.request(), records=store.record_rows())  # as the CLI reads them
    _, _, trace = plan_again(request, None)
    assert trace is not None
    manifests = dict(request.documents)
    stamps = {document: f"text of {document}" for document in manifests}
    kept = KeptTraces(tmp_path / "traces", database="db")
    assert kept.keep("demo", trace, stamps, store.change_versions(), store, rows=store.record_rows())
    web, db = key("vm/web"), key("vm/db")
    store.save_resource(dataclasses.replace(world.records[web], status="updating"))  # as an apply writes it
    versions, rows = store.change_versions(), store.record_rows()
    read = kept.read("demo", versions, store)
    assert read is not None and not read.holds and read.known is None
    told = {web: rows.summaries()[web]}
    assert not kept.advance("demo", versions, versions, store, moved=told)  # not said to be the state it read
    assert kept.advance("demo", versions, versions, store, read=read, moved=told)

    now = kept.read("demo", versions, store)
    assert now is not None and now.holds and now.known is not None
    assert dict(now.known) == rows.summaries()  # the written row's summary as it is now, the others as kept
    found = kept.find("demo", versions, store, manifests, stamps, read=now)
    assert found is not None and found.stamped is not None and found.stamped.moved == {web}

    # Someone writes: the state no longer holds, and every row tells what moved since the trace was kept.
    store.save_resource(dataclasses.replace(world.records[db], status="updating"))
    later = store.change_versions()
    again = kept.read("demo", later, store)
    assert again is not None and not again.holds
    found = kept.find("demo", later, store, manifests, stamps, read=again)
    assert found is not None and found.stamped is not None and found.stamped.moved == {web, db}


def test_a_writer_moves_the_trace_state_past_its_own_records_from_the_counters_it_held_at(
    tmp_path: Path, store: Store
) -> None:
    world = converge(BASE, vm("web"), vm("db"))
    store.save_resources(list(world.records.values()))
    request = dataclasses.replace(world.request(), records=store.record_rows())
    _, _, trace = plan_again(request, None)
    assert trace is not None
    manifests = dict(request.documents)
    stamps = {document: f"text of {document}" for document in manifests}
    kept = KeptTraces(tmp_path / "traces", database="db")
    before = store.change_versions()
    assert kept.keep("demo", trace, stamps, before, store, rows=store.record_rows())
    web, db = key("vm/web"), key("vm/db")
    store.save_resource(dataclasses.replace(world.records[web], status="updating"))  # the writer's own record
    after = store.change_versions()
    told = {web: store.rows_of([web]).summaries()[web]}
    assert not kept.written("demo", after, after, store, told)  # not the counters the state holds at
    assert not kept.written("demo", before, before, store, told)  # not the counters now
    assert kept.written("demo", before, after, store, told)

    now = kept.read("demo", after, store)
    assert now is not None and now.holds and now.known is not None
    assert dict(now.known) == store.record_rows().summaries()
    found = kept.find("demo", after, store, manifests, stamps, read=now)
    assert found is not None and found.stamped is not None and found.stamped.moved == {web}

    # Its state moves on again with the next writing, the records written before still among the moved ones.
    store.save_resource(dataclasses.replace(world.records[db], status="updating"))
    later = store.change_versions()
    assert kept.written("demo", after, later, store, {db: store.rows_of([db]).summaries()[db]})
    read = kept.read("demo", later, store)
    assert read is not None and read.holds
    found = kept.find("demo", later, store, manifests, stamps, read=read)
    assert found is not None and found.stamped is not None and found.stamped.moved == {web, db}
