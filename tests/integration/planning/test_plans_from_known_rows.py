"""A plan made from a kept trace while the database holds the very records the trace was made from reads only the
rows of the records it reads (``database.record_rows.KnownRows``); when records are written meanwhile, it is made
again from every row read at once.

The controller here is the CLI's (kept observations and kept traces, on the simulated fleet and SQLite). The
statement of what is right is the plan of a controller that keeps neither, made from every record read at once, on
the same database and fleet.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nebctl.controller.applying import Controller, PlannedApply, PlanOptions
from nebctl.controller.kept_observations import ObservationKeeper
from nebctl.controller.kept_traces import KeptTraces
from nebctl.controller.planning import PlanError
from nebctl.core.keys import Kind, ResourceKey
from nebctl.database import ResourceRecord, Store, record_rows
from nebctl.database.record_rows import KnownRows, RowSummary
from nebctl.drivers.registry import Registry, build_registry
from nebctl.drivers.sim import SimMonitoring
from nebctl.schemas.caching import load_paths_cached
from tests.support.drills import Workspace, fleet_manifests

# Enough records that reading them a few at a time is worth it (past a quarter of them, every row is read).
VMS, PER_FILE = 1000, 50


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A fleet of 1,000 VMs in files of 50, applied by a ``nebctl`` process."""
    root = tmp_path_factory.mktemp("known-rows")
    manifests = root / "manifests"
    manifests.mkdir()
    documents = fleet_manifests(vms=VMS, hosts=4).split("---\n")
    infrastructure = documents[:-VMS]
    # Each VM on a host of its own choosing: a placement policy reads usage figures, which move with the clock, so
    # every plan would observe afresh (and word every VM's drift, reading every record).
    vms = [vm.replace("{policy: striping}", f"{{host: h{index % 4:02d}}}") for index, vm in enumerate(documents[-VMS:])]
    (manifests / "base.yaml").write_text("---\n".join(infrastructure))
    for start in range(0, VMS, PER_FILE):
        (manifests / f"vms-{start // PER_FILE}.yaml").write_text("---\n".join(vms[start : start + PER_FILE]))
    workspace = Workspace(root / "w", manifests=manifests)
    result = workspace.apply()
    assert result.returncode == 0, result.stderr
    return workspace


@pytest.fixture
def workspace(applied: Workspace, tmp_path: Path) -> Iterator[Workspace]:
    """A copy of the applied workspace for one test, with its manifests as applied."""
    root = tmp_path / "copy"
    shutil.copytree(applied.root, root / "w")
    shutil.copytree(applied.manifests, root / "manifests")
    yield Workspace(root / "w", manifests=root / "manifests")


class _Opened:
    """The CLI's controller in this process, or the plain one (no kept observation, no kept trace)."""

    def __init__(self, workspace: Workspace, store: Store, registry: Registry) -> None:
        self.workspace, self.store, self.registry = workspace, store, registry
        cache = workspace.state_dir / "cache"
        self.cli = Controller(
            store=store,
            registry=registry,
            settings=workspace.settings,
            observations=ObservationKeeper(cache / "observations", database=workspace.db_url),
            traces=KeptTraces(cache / "traces", database=workspace.db_url),
        )
        self.plain = Controller(store=store, registry=registry, settings=workspace.settings)

    def plan(self, controller: Controller) -> PlannedApply:
        loaded = load_paths_cached([self.workspace.manifests], self.workspace.state_dir / "cache")
        # The plain controller plans every document read whole, not what the manifest cache tells of them.
        documents = dict(loaded.documents) if controller is self.plain else loaded.documents
        return controller.plan(documents, PlanOptions(stack=self.workspace.stack), loaded.stamps)


@pytest.fixture
def opened(workspace: Workspace) -> Iterator[_Opened]:
    registry = build_registry(workspace.settings)
    try:
        with workspace.store() as store:
            yield _Opened(workspace, store, registry)
    finally:
        registry.close()


def _same(planned: PlannedApply, truth: PlannedApply) -> None:
    assert (planned.plan.changes, planned.plan.actions, planned.plan.edges) == (
        truth.plan.changes,
        truth.plan.actions,
        truth.plan.edges,
    )


def _edit(workspace: Workspace, file: str, old: str, new: str) -> None:
    """The first ``old`` of ``file`` made ``new`` (a label of its first VM: placed where it was, planned again)."""
    path = workspace.manifests / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _known_rows(monkeypatch: pytest.MonkeyPatch) -> list[KnownRows]:
    """The ``KnownRows`` each plan reads from, from now on."""
    made: list[KnownRows] = []
    real = Store.known_rows

    def known_rows(store: Store, known: dict[ResourceKey, RowSummary]) -> KnownRows:
        made.append(real(store, known))
        return made[-1]

    monkeypatch.setattr(Store, "known_rows", known_rows)
    return made


def _whole_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A line per reading of every row at once (``Store.record_rows``), from now on."""
    read: list[int] = []
    real = Store.record_rows

    def record_rows_read(store: Store) -> Any:
        read.append(1)
        return real(store)

    monkeypatch.setattr(Store, "record_rows", record_rows_read)
    return read


def test_a_plan_after_an_edit_reads_the_rows_of_the_records_it_plans_again(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = opened.plan(opened.cli)  # whole (the apply wrote the records): its trace is kept
    assert not first.plan.has_changes
    made = _known_rows(monkeypatch)
    _edit(opened.workspace, "vms-3.yaml", "namespace: default}", "namespace: default, labels: {edited: x}}")
    planned = opened.plan(opened.cli)
    [known] = made
    # The 50 VMs of the edited file are planned again: their rows and the next ones in key order, and those of the
    # datastore, image and network, whose hosts are listed (with the hosts and VMs after them): two queries.
    assert PER_FILE <= known.read_rows <= 2 * record_rows.ROWS_AT_ONCE < len(known)
    truth = opened.plan(opened.plain)
    _same(planned, truth)
    assert [change.key.name for change in planned.plan.changes if change.is_change] == ["vm-0150"]


def test_records_written_while_a_plan_reads_their_rows_make_it_plan_again_from_every_row(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened.plan(opened.cli)
    made, whole = _known_rows(monkeypatch), _whole_reads(monkeypatch)
    # Another writer, between the first rows this plan reads and the next: the record of a VM of the edited file
    # says it was applied with 7 vCPUs (so the manifest's 1 is a change).
    written: list[str] = []
    real_rows = record_rows._Reading.row

    def row_then_write(reading: Any, key: ResourceKey) -> Any:
        found = real_rows(reading, key)
        if not written:
            with opened.workspace.store() as other:
                [record] = other.get_resources([ResourceKey.parse("vm/vm-0151")])
                assert record.applied is not None
                other.save_resource(dataclasses.replace(record, applied={**record.applied, "vcpu": 7}))
            written.append(key.name)
        return found

    monkeypatch.setattr(record_rows._Reading, "row", row_then_write)
    _edit(opened.workspace, "vms-3.yaml", "namespace: default}", "namespace: default, labels: {edited: x}}")
    planned = opened.plan(opened.cli)
    assert written and len(made) == 1 and whole == [1]  # read row by row, then planned again from every row
    truth = opened.plan(opened.plain)
    _same(planned, truth)
    assert any(change.key.name == "vm-0151" and change.is_change for change in planned.plan.changes)


def test_a_record_deleted_while_a_plan_reads_the_rows_makes_it_plan_again_from_every_row(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened.plan(opened.cli)
    made, whole = _known_rows(monkeypatch), _whole_reads(monkeypatch)
    deleted = ResourceKey.parse("vm/vm-0155")  # of the edited file: its row is read after the first ones
    real_row = record_rows._Reading.row

    def deleted_first(reading: Any, key: ResourceKey) -> Any:
        if not reading.rows:
            opened.store.delete_resource(deleted)
        return real_row(reading, key)

    monkeypatch.setattr(record_rows._Reading, "row", deleted_first)
    _edit(opened.workspace, "vms-3.yaml", "namespace: default}", "namespace: default, labels: {edited: x}}")
    # Its VM is still there, with this stack's ownership: the plan refuses to create it again, as a plan made from
    # every row says, and names it (not a record of the known rows that is gone, nor any other error).
    with pytest.raises(PlanError) as planned:
        opened.plan(opened.cli)
    assert len(made) == 1 and whole == [1]
    with pytest.raises(PlanError) as truth:
        opened.plan(opened.plain)
    assert planned.value.problems == truth.value.problems and "vm/vm-0155" in planned.value.problems[0]


def test_a_plan_that_fails_while_records_are_written_is_made_again_from_every_row(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Problems found on rows read one query at a time, while another writer wrote, may be those of no state the
    database was ever in: they are not reported, the plan is made again from every row."""
    opened.plan(opened.cli)
    made, whole = _known_rows(monkeypatch), _whole_reads(monkeypatch)
    real = Controller._refuse_second_copies
    refused: list[int] = []

    def refused_while_written(controller: Controller, *args: Any) -> None:
        if not refused:
            refused.append(1)
            with opened.workspace.store() as other:  # any record written: here, one of another stack
                other.save_resource(ResourceRecord(Kind.NETWORK, "default", "elsewhere", "other"))
            raise PlanError(["found on rows read while another writer wrote"])
        real(controller, *args)

    monkeypatch.setattr(Controller, "_refuse_second_copies", refused_while_written)
    _edit(opened.workspace, "vms-3.yaml", "namespace: default}", "namespace: default, labels: {edited: x}}")
    planned = opened.plan(opened.cli)
    assert refused and len(made) == 1 and whole == [1]

    # Without another writer, the problems are the plan's own: reported as they are.
    def refused_alone(controller: Controller, *args: Any) -> None:
        raise PlanError(["the plan's own problem"])

    monkeypatch.setattr(Controller, "_refuse_second_copies", refused_alone)
    with pytest.raises(PlanError, match="the plan's own problem"):
        opened.plan(opened.cli)
    assert len(made) == 2 and whole == [1]  # made from the known rows only
    monkeypatch.setattr(Controller, "_refuse_second_copies", real)
    _same(planned, opened.plan(opened.plain))


def test_a_plan_that_observes_afresh_reads_every_row_in_one_query(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It writes what it saw, wording each VM's drift from its record: every record is read anyway."""
    opened.plan(opened.cli)
    made, whole = _known_rows(monkeypatch), _whole_reads(monkeypatch)
    [entry] = (opened.workspace.state_dir / "cache" / "observations").glob("*/*")
    entry.unlink()  # no observation kept: the hosts are observed afresh
    _edit(opened.workspace, "vms-3.yaml", "namespace: default}", "namespace: default, labels: {edited: x}}")
    planned = opened.plan(opened.cli)
    assert made == [] and whole == [1]
    _same(planned, opened.plan(opened.plain))


def _probes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """The hosts each of the sim's probes was asked of, by probe, from now on."""
    asked: dict[str, list[list[str]]] = {"probe_many": [], "probe_vms": [], "probe_hosts": [], "probe_host": []}
    for name in asked:
        real = getattr(SimMonitoring, name)

        def counted(driver: Any, hosts: Any, *, _name: str = name, _real: Any = real) -> Any:
            asked[_name].append(sorted(ref.name for ref in hosts) if isinstance(hosts, list) else [hosts.name])
            return _real(driver, hosts)

        monkeypatch.setattr(SimMonitoring, name, counted)
    return asked


def test_a_plan_on_an_observation_older_than_its_figures_probes_the_hosts_alone(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the kept observation's age for usage figures, while the drivers vouch for the hosts: each host's own
    probe is made again (one bulk call), not its VMs', the records are read as known rows, only the hosts' samples
    are written, and the plan is the plain controller's. A VM stopped behind nebctl's back moves its host's word:
    that host alone is probed again whole, and the drift shows as the plain controller shows it."""
    opened.plan(opened.cli)  # whole: its observation kept
    keeper = opened.cli.observations
    assert keeper is not None
    keeper.max_age = 0.0  # every kept observation is older than that
    store = opened.store
    hosts_before, vms_before = len(store.host_samples()), len(store.vm_samples())
    made, whole, asked = _known_rows(monkeypatch), _whole_reads(monkeypatch), _probes(monkeypatch)
    _edit(opened.workspace, "vms-3.yaml", "namespace: default}", "namespace: default, labels: {edited: x}}")
    planned = opened.plan(opened.cli)
    assert len(made) == 1 and whole == []
    assert asked == {"probe_many": [], "probe_vms": [], "probe_hosts": [["h00", "h01", "h02", "h03"]], "probe_host": []}
    assert len(store.host_samples()) == hosts_before + 4 and len(store.vm_samples()) == vms_before
    _same(planned, opened.plan(opened.plain))

    with opened.workspace.fleet() as fleet:
        fleet.stop_vm("vm-0152")  # on h00 (every fourth VM is)
    for probes in asked.values():
        probes.clear()
    _edit(opened.workspace, "vms-3.yaml", "edited: x", "edited: y")
    planned = opened.plan(opened.cli)
    assert asked["probe_hosts"] == [["h01", "h02", "h03"]] and asked["probe_vms"] == [["h00"]]
    truth = opened.plan(opened.plain)
    _same(planned, truth)
    assert any(change.key.name == "vm-0152" and change.is_change for change in truth.plan.changes)


def test_a_plan_that_fails_after_writing_its_own_observation_reports_it_once(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counters moved by the plan's own writing (a fresh observation, the fleet having moved) are not another
    writer's: the problems are reported as they are, without planning again (nor writing the observation twice)."""
    opened.plan(opened.cli)
    with opened.workspace.fleet() as fleet:
        fleet.stop_vm("vm-0152")  # the drivers' word moves: the kept observation is not reused
    made, whole = _known_rows(monkeypatch), _whole_reads(monkeypatch)
    counted = opened.store.change_versions().resources

    def refused_alone(controller: Controller, *args: Any) -> None:
        raise PlanError(["the plan's own problem"])

    monkeypatch.setattr(Controller, "_refuse_second_copies", refused_alone)
    _edit(opened.workspace, "vms-3.yaml", "namespace: default}", "namespace: default, labels: {edited: x}}")
    with pytest.raises(PlanError, match="the plan's own problem"):
        opened.plan(opened.cli)
    assert len(made) == 1 and whole == []  # made from the known rows, once
    assert opened.store.change_versions().resources == counted + 1  # its observation written once


def test_after_an_apply_the_plans_of_later_edits_read_only_the_rows_they_read(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An apply made from the kept trace moves its state on past the records it wrote, with what their rows tell, when
    nobody else wrote meanwhile: the plans after it read the rows of the records they read (the written ones among
    them), not every row to tell which moved."""
    opened.plan(opened.cli)  # whole: its trace is kept
    _edit(opened.workspace, "vms-3.yaml", "namespace: default}", "namespace: default, labels: {edited: x}}")
    applied = opened.workspace.apply()  # a nebctl process: vm-0150's record rewritten, the fleet moved
    assert applied.returncode == 0, applied.stderr
    made, whole = _known_rows(monkeypatch), _whole_reads(monkeypatch)
    after = opened.plan(opened.cli)
    [known] = made
    assert not after.plan.has_changes and whole == []
    assert PER_FILE <= known.read_rows <= 3 * record_rows.ROWS_AT_ONCE < len(known)
    assert "vm-0150" in {key.name for key in known.raw_rows()}  # written by the apply: planned again
    _edit(opened.workspace, "vms-5.yaml", "namespace: default}", "namespace: default, labels: {edited: y}}")
    planned = opened.plan(opened.cli)
    assert len(made) == 2 and whole == [] and made[1].read_rows <= 3 * record_rows.ROWS_AT_ONCE
    # The plain controller observes afresh and writes it: the statement of what is right comes last.
    _same(planned, opened.plan(opened.plain))
    assert [change.key.name for change in planned.plan.changes if change.is_change] == ["vm-0250"]


def test_after_another_writer_the_next_plan_tells_the_moved_records_from_every_row_once(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records written by another writer (not an apply made from the trace) leave the kept trace's state behind: the
    next plan reads every row and tells the records that moved from their digests. It hands them, with what their
    rows tell, to the trace's state: the plans after it read the rows of the records they read again (the moved
    ones among them), until someone writes."""
    opened.plan(opened.cli)  # whole: its trace is kept
    with opened.workspace.store() as other:  # vm-0150's record written again as it was (its row's times move)
        other.save_resources(other.get_resources([ResourceKey.parse("vm/vm-0150")]))
    made, whole = _known_rows(monkeypatch), _whole_reads(monkeypatch)
    after = opened.plan(opened.cli)
    assert made == [] and whole == [1] and not after.plan.has_changes  # every row read, once
    whole.clear()
    _edit(opened.workspace, "vms-5.yaml", "namespace: default}", "namespace: default, labels: {edited: y}}")
    planned = opened.plan(opened.cli)
    [known] = made
    assert whole == [] and PER_FILE <= known.read_rows <= 3 * record_rows.ROWS_AT_ONCE < len(known)
    assert "vm-0150" in {key.name for key in known.raw_rows()}  # written by the other writer: planned again
    _same(planned, opened.plan(opened.plain))
    assert [change.key.name for change in planned.plan.changes if change.is_change] == ["vm-0250"]

    # Another writer again: the state does not hold, every row is read and told again.
    with opened.workspace.store() as other:
        [record] = other.get_resources([ResourceKey.parse("vm/vm-0251")])
        assert record.applied is not None
        other.save_resource(dataclasses.replace(record, applied={**record.applied, "vcpu": 7}))
    whole.clear()
    planned = opened.plan(opened.cli)
    assert whole == [1] and len(made) == 1
    _same(planned, opened.plan(opened.plain))
    assert {change.key.name for change in planned.plan.changes if change.is_change} == {"vm-0250", "vm-0251"}


def _apply(opened: _Opened, planned: PlannedApply, *, meanwhile: Any = None) -> None:
    """Apply ``planned`` with the CLI's controller in this process, calling ``meanwhile`` at its first change."""
    called: list[int] = []

    def on_change(changes: Any) -> None:
        if meanwhile is not None and not called:
            called.append(1)
            meanwhile()

    result = opened.cli.apply(planned, on_change=on_change)
    assert result.report.ok


def test_an_apply_with_another_writer_meanwhile_leaves_the_trace_behind(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counters after an apply count another writer's record too: what the apply wrote is not all that moved,
    and the next plan tells the moved records from every row (the other writer's among them)."""
    opened.plan(opened.cli)
    _edit(opened.workspace, "vms-3.yaml", "namespace: default}", "namespace: default, labels: {edited: x}}")
    planned = opened.plan(opened.cli)
    assert planned.trace_holds

    def other_writes() -> None:
        with opened.workspace.store() as other:
            [record] = other.get_resources([ResourceKey.parse("vm/vm-0251")])
            assert record.applied is not None
            other.save_resource(dataclasses.replace(record, applied={**record.applied, "vcpu": 7}))

    _apply(opened, planned, meanwhile=other_writes)
    made, whole = _known_rows(monkeypatch), _whole_reads(monkeypatch)
    after = opened.plan(opened.cli)
    assert made == [] and whole == [1]
    _same(after, opened.plan(opened.plain))
    assert [change.key.name for change in after.plan.changes if change.is_change] == ["vm-0251"]


def test_an_apply_alone_moves_the_trace_on_and_one_that_creates_a_record_does_not(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened.plan(opened.cli)
    _edit(opened.workspace, "vms-3.yaml", "namespace: default}", "namespace: default, labels: {edited: x}}")
    _apply(opened, opened.plan(opened.cli))
    made, whole = _known_rows(monkeypatch), _whole_reads(monkeypatch)
    after = opened.plan(opened.cli)
    assert len(made) == 1 and whole == [] and not after.plan.has_changes
    # The table's summary the trace held with, handed on for the kept plan: the table's as it is.
    assert after.table is not None and after.table == opened.store.resources_stamp()
    _same(after, opened.plan(opened.plain))

    # A VM more: its record is one the trace was not made from, the trace is left as it was.
    path = opened.workspace.manifests / "vms-5.yaml"
    first = path.read_text().split("---\n")[0]
    path.write_text(path.read_text() + "---\n" + first.replace("vm-0250", "vm-extra"))
    planned = opened.plan(opened.cli)
    assert [change.key.name for change in planned.plan.changes if change.is_change] == ["vm-extra"]
    _apply(opened, planned)
    made.clear()
    whole.clear()
    after = opened.plan(opened.cli)
    assert made == [] and whole == [1] and not after.plan.has_changes
    _same(after, opened.plan(opened.plain))


def _vm_rows(store: Store) -> dict[str, tuple[Any, ...]]:
    """What the database keeps of each VM's last observation (a row only where it differs from its record), but
    its time."""
    found = store.list_observations()
    return {key.name: (o.host, o.state, o.details) for key, o in found.items() if key.kind is Kind.VIRTUAL_MACHINE}


def test_an_observation_written_from_known_rows_keeps_the_rows_of_the_vms_it_did_not_plan_again(
    opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host probed again has its rows written again, each VM's worded from its record, before the plan reads any:
    those of its VMs the plan does not plan again (seen as the trace saw them) are read for it too."""
    with opened.workspace.fleet() as fleet:
        fleet.stop_vm("vm-0152")  # on h00: the whole plan's trace sees it stopped
    opened.plan(opened.cli)
    assert _vm_rows(opened.store).keys() == {"vm-0152"}
    with opened.workspace.fleet() as fleet:
        fleet.stop_vm("vm-0156")  # h00's word moves: probed again
    made, whole = _known_rows(monkeypatch), _whole_reads(monkeypatch)
    planned = opened.plan(opened.cli)
    assert len(made) == 1 and whole == []  # made from the known rows
    written = _vm_rows(opened.store)
    assert written.keys() == {"vm-0152", "vm-0156"} and written["vm-0152"][1] == "stopped"
    # What an observation of every host, written whole from every record, leaves.
    truth = opened.plan(opened.plain)
    assert written == _vm_rows(opened.store)
    _same(planned, truth)
