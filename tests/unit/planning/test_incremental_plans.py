"""Planning again from the last plan's trace (``planning.incremental``) gives the plan a whole plan gives.

The property drives a world through random steps, the way the service meets them: manifests edited (labels, state,
size, NICs, placement), VMs added and removed, a host edited, drift, plans applied, the same inputs again. After
each step the plan made from the last trace and the plan made whole must be equal in every part (changes, actions,
order, drift, warnings, resolved specs), or fail with the same problems. The examples below state, for a few
edits, which resources are planned again, and that the whole plan is made whenever something shared moved.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nebctl.controller.planning import PlanError, PlanRequest, PlanTrace, plan_again, plan_with_specs
from nebctl.controller.planning.incremental import Replan, kept_trace, replanned, with_moved_records
from nebctl.core.keys import ResourceKey
from nebctl.core.plans import Plan
from nebctl.database.records import ResourceRecord
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe
from nebctl.reconcilers.base import LiveView
from nebctl.reconcilers.identity import VMIdentity
from nebctl.schemas.models import AnyManifest

from .test_changed_outside import FULL, OVERLAY, listed
from .world import BASE, World, actions_of, applied, converge, documents, key, vm, without

NAMES = [f"vm{index}" for index in range(8)]
PLACEMENTS = [
    "placement: {host: h1}",
    "placement: {host: h2}",
    "placement: {policy: packing}",
    "placement: {}",
    # Rules that read the hosts' usage figures: the emptiest host by CPU load, a host under some load.
    "placement: {policy: load}",
    "placement: {requirements: 'load < 0.5'}",
]
FIRST_PLACEMENTS = 4  # those of the VMs at the start, in turn: the others come by edits


def _vm(name: str, *, vcpu: int = 2, label: str = "web", state: str = "running", nics: int = 1, where: int = 2) -> str:
    text = vm(name, **{"vcpu: 2": f"vcpu: {vcpu}\n  state: {state}", "app: web": f"app: {label}"})
    text = text.replace("placement: {host: h1}", PLACEMENTS[where])
    if nics == 2:
        text = text.replace(
            "    - {network: lan, securityGroups: [ssh]}",
            "    - {network: lan, securityGroups: [ssh]}\n    - {network: lan}",
        )
    return text


def _one(text: str) -> AnyManifest:
    """The document of ``text``, validated beside the usual surroundings (in place of its namesake there)."""
    name = text.split("name: ", 1)[1].split(",", 1)[0].split("}", 1)[0]
    wanted = key(("host/" if "kind: Host" in text else "vm/") + name)
    return documents(without(BASE, name), text)[wanted]


def _start() -> World:
    texts = [BASE] + [_vm(name, where=index % FIRST_PLACEMENTS) for index, name in enumerate(NAMES[:6])]
    return converge(*texts)


def _small(live: LiveView) -> LiveView:
    """``live`` with hosts of 10 CPUs: a VM that grows can push another off its host."""
    return dataclasses.replace(live, hosts={name: dataclasses.replace(p, cpus=10) for name, p in live.hosts.items()})


def _same(incremental: tuple[Plan, Mapping[ResourceKey, Any]], whole: tuple[Plan, Mapping[ResourceKey, Any]]) -> None:
    (plan, specs), (expected, expected_specs) = incremental, whole
    assert plan.changes == expected.changes
    assert plan.actions == expected.actions
    assert plan.edges == expected.edges
    assert plan.drift == expected.drift
    assert plan.warnings == expected.warnings
    assert specs == expected_specs


def _plans(
    request: PlanRequest, trace: PlanTrace | None, stamps: Mapping[ResourceKey, str] | None = None
) -> PlanTrace | None:
    """Plan ``request`` from ``trace`` (compared by ``stamps`` when it was kept) and whole; both must agree. The
    incremental plan's trace, for the next; None when the plan failed."""
    try:
        plan, specs, following = plan_again(request, trace, stamps)
    except PlanError as error:
        with pytest.raises(PlanError) as whole:
            plan_with_specs(request)
        assert error.problems == whole.value.problems
        return None  # the controller forgets its trace when a plan fails
    _same((plan, specs), plan_with_specs(request))
    return following


# One step: what it does to the manifests, the records and the live view. Unchanged objects stay the same objects,
# as the manifest cache and the records cache hand them out again.
STEPS = st.one_of(
    st.tuples(st.just("label"), st.sampled_from(NAMES), st.sampled_from(["web", "db", "cache"])),
    st.tuples(st.just("state"), st.sampled_from(NAMES), st.sampled_from(["running", "stopped"])),
    st.tuples(st.just("vcpu"), st.sampled_from(NAMES), st.sampled_from([1, 2, 3, 4, 8])),
    st.tuples(st.just("nics"), st.sampled_from(NAMES), st.sampled_from([1, 2])),
    st.tuples(st.just("where"), st.sampled_from(NAMES), st.integers(0, len(PLACEMENTS) - 1)),
    st.tuples(st.just("same copy"), st.sampled_from(NAMES), st.just(0)),
    st.tuples(st.just("remove"), st.sampled_from(NAMES), st.just(0)),
    st.tuples(st.just("stopped outside"), st.sampled_from(NAMES), st.just(0)),
    st.tuples(st.just("record status"), st.sampled_from(NAMES), st.sampled_from(["updating", "running"])),
    st.tuples(st.just("record host"), st.sampled_from(NAMES), st.sampled_from(["h1", "h2"])),
    st.tuples(st.just("host label"), st.just("h2"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("usage moved"), st.sampled_from(NAMES), st.floats(0, 2)),
    st.tuples(st.just("vm gone"), st.sampled_from(NAMES), st.just(0)),
    st.tuples(st.just("vm moved"), st.sampled_from(NAMES), st.sampled_from(["h1", "h2"])),
    st.tuples(st.just("probe moved"), st.sampled_from(["h1", "h2"]), st.integers(1, 64)),
    st.tuples(st.just("host usage moved"), st.sampled_from(["h1", "h2"]), st.floats(0, 1)),
    st.tuples(st.just("host down"), st.sampled_from(["h1", "h2"]), st.sampled_from(["error", "online"])),
    st.tuples(st.just("apply"), st.just(""), st.just(0)),
    st.tuples(st.just("again"), st.just(""), st.just(0)),
)


@dataclasses.dataclass
class _State:
    documents: dict[ResourceKey, AnyManifest]
    records: dict[ResourceKey, ResourceRecord]
    live: LiveView
    settings: dict[str, dict[str, Any]]  # each VM's parameters, as ``_vm`` takes them
    prune: bool

    def request(self) -> PlanRequest:
        return PlanRequest(
            stack="demo", documents=dict(self.documents), records=dict(self.records), live=self.live, prune=self.prune
        )


def _step(state: _State, step: tuple[str, str, Any]) -> None:
    what, name, value = step
    if what == "apply":
        _apply(state)
    elif what == "host label":
        text = f"apiVersion: nebctl/v1\nkind: Host\nmetadata: {{name: h2, labels: {{rack: {value}}}}}\nspec: {{uri: 'sim://h2'}}"
        state.documents[key("host/h2")] = _one(text)
    elif what == "probe moved":  # its capacity and usage as probed: placement reads them
        probe = dataclasses.replace(state.live.hosts[name], cpus=value, cpu_usage=value / 100)
        state.live = dataclasses.replace(state.live, hosts={**state.live.hosts, name: probe})
    elif what == "host usage moved":  # what moves with every probe: only VMs placed anew read it
        probe = _busy(state.live.hosts[name], value)
        state.live = dataclasses.replace(state.live, hosts={**state.live.hosts, name: probe})
    elif what == "host down":
        probe = dataclasses.replace(state.live.hosts[name], state=HostLiveState(value))
        state.live = dataclasses.replace(state.live, hosts={**state.live.hosts, name: probe})
    elif what != "again":
        _vm_step(state, what, key(f"vm/{name}"), value)


def _busy(probe: HostProbe, usage: float) -> HostProbe:
    """``probe`` with other usage figures: CPU usage and load, free memory and disk."""
    return dataclasses.replace(
        probe,
        cpu_usage=usage,
        load=usage * probe.cpus,
        free_memory=int(probe.memory * (1 - usage)),
        disk_free=int(probe.disk_total * (1 - usage)),
    )


def _vm_step(state: _State, what: str, vm_key: ResourceKey, value: Any) -> None:
    name = vm_key.name
    parameters = state.settings.setdefault(name, {"where": NAMES.index(name) % FIRST_PLACEMENTS})
    if what in ("label", "state", "vcpu", "nics", "where"):
        parameters[what] = value
        state.documents[vm_key] = _one(_vm(name, **parameters))
    elif what == "same copy" and vm_key in state.documents:
        state.documents[vm_key] = _one(_vm(name, **parameters))
    elif what == "remove":
        state.documents.pop(vm_key, None)
    elif what == "stopped outside" and vm_key in state.records:
        uuid = VMIdentity.recorded(vm_key, state.records[vm_key].live).uuid
        if uuid in state.live.vms:
            vms = {**state.live.vms, uuid: dataclasses.replace(state.live.vms[uuid], state=VMLiveState.STOPPED)}
            state.live = dataclasses.replace(state.live, vms=vms)
    elif what in ("usage moved", "vm gone", "vm moved") and vm_key in state.records:
        uuid = VMIdentity.recorded(vm_key, state.records[vm_key].live).uuid
        vms, vm_hosts = dict(state.live.vms), dict(state.live.vm_hosts)
        if uuid not in vms:
            return
        if what == "usage moved":  # what the probe measures, which planning does not read
            vms[uuid] = dataclasses.replace(vms[uuid], cpu_usage=value, memory_used=int(value * 1024))
        elif what == "vm gone":
            del vms[uuid], vm_hosts[uuid]
        else:
            vm_hosts[uuid] = value
        state.live = dataclasses.replace(state.live, vms=vms, vm_hosts=vm_hosts)
    elif what == "record status" and vm_key in state.records:
        state.records[vm_key] = dataclasses.replace(state.records[vm_key], status=value)
    elif what == "record host" and vm_key in state.records:  # as a migration outside nebctl, recorded
        state.records[vm_key] = dataclasses.replace(state.records[vm_key], host=value)


def _apply(state: _State) -> None:
    """Every change of the plan done, as the journal records it: the records it wrote are new objects, the
    others stay the objects they were."""
    try:
        world = applied(state.request())
    except PlanError:
        return
    for record_key, record in world.records.items():
        if state.records.get(record_key) != record:
            state.records[record_key] = record
    for gone in set(state.records) - set(world.records):
        del state.records[gone]
    state.live = dataclasses.replace(world.live, hosts=state.live.hosts)  # the hosts' probes as they were


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEPS, min_size=1, max_size=12), prune=st.booleans(), small=st.booleans())
def test_a_plan_made_from_the_last_trace_is_the_whole_plan(
    steps: list[tuple[str, str, Any]], prune: bool, small: bool
) -> None:
    world = _start()
    live = _small(world.live) if small else world.live
    state = _State(dict(world.documents), dict(world.records), live, {}, prune)
    trace = _plans(state.request(), None)
    for step in steps:
        _step(state, step)
        trace = _plans(state.request(), trace)


# --- which resources are planned again --------------------------------------------------------------------------


def _traced(world: World) -> tuple[PlanRequest, PlanTrace]:
    request = PlanRequest(stack="demo", documents=dict(world.documents), records=dict(world.records), live=world.live)
    _, _, trace = plan_again(request, None)
    assert trace is not None
    return request, trace


def _edited(request: PlanRequest, changes: Mapping[ResourceKey, AnyManifest], **others: Any) -> PlanRequest:
    return dataclasses.replace(request, documents={**request.documents, **changes}, **others)


def test_a_label_edit_plans_only_that_vm_again_and_updates_it() -> None:
    request, trace = _traced(_start())
    edited = _edited(request, {key("vm/vm1"): _one(_vm("vm1", label="db", where=1))})
    assert replanned(trace, edited) == Replan(frozenset({key("vm/vm1")}))
    plan, _, _ = plan_again(edited, trace)
    assert [(str(c.key), c.type.value) for c in plan.changes if c.is_change] == [("vm/vm1", "update")]
    assert [f.path for c in plan.changes if c.is_change for f in c.fields] == ["metadata.labels.app"]


def test_the_same_inputs_plan_nothing_again() -> None:
    request, trace = _traced(_start())
    assert replanned(trace, dataclasses.replace(request, documents=dict(request.documents))) == Replan(frozenset())


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param({"vcpu": 4}, Replan(frozenset({key("vm/vm1")}), placing=True), id="a VM grows"),
        pytest.param({"where": 3}, Replan(frozenset({key("vm/vm1")}), placing=True), id="other placement rules"),
        pytest.param({"nics": 2}, None, id="a NIC more"),
    ],
)
def test_what_an_edit_of_what_vms_share_replans(edit: dict[str, Any], expected: Replan | None) -> None:
    request, trace = _traced(_start())
    assert replanned(trace, _edited(request, {key("vm/vm1"): _one(_vm("vm1", **{"where": 1, **edit}))})) == expected


def test_a_vm_that_grows_in_place_is_planned_alone_and_one_that_moves_another_plans_everything() -> None:
    # vm/a is fixed on h1, vm/b and vm/c are packed beside it; on hosts of 10 CPUs, vm/a growing from 2 to 4 vCPUs
    # leaves room for both; growing to 8, it leaves none for vm/c (the last in name order), which goes to h2.
    world = converge(BASE, _vm("a", where=0), _vm("b", where=2), _vm("c", where=2))
    world = dataclasses.replace(world, live=_small(world.live))
    request, trace = _traced(world)
    assert {record.host for k, record in request.records.items() if k.kind.value == "VirtualMachine"} == {"h1"}

    grown = _edited(request, {key("vm/a"): _one(_vm("a", vcpu=4, where=0))})
    assert replanned(trace, grown) == Replan(frozenset({key("vm/a")}), placing=True)
    plan, specs, _ = plan_again(grown, trace)
    _same((plan, specs), plan_with_specs(grown))
    assert [(str(c.key), c.type.value, c.restart) for c in plan.changes if c.is_change] == [("vm/a", "update", True)]

    crowded = _edited(request, {key("vm/a"): _one(_vm("a", vcpu=8, where=0))})
    plan, specs, _ = plan_again(crowded, trace)
    _same((plan, specs), plan_with_specs(crowded))
    moves = [(str(c.key), c.previous_host, c.host) for c in plan.changes if c.previous_host not in (None, c.host)]
    assert moves == [("vm/c", "h1", "h2")]


def test_new_vms_other_kinds_hosts_that_stop_answering_and_options_plan_everything() -> None:
    world = _start()
    request, trace = _traced(world)
    host = _one("apiVersion: nebctl/v1\nkind: Host\nmetadata: {name: h2, labels: {rack: a}}\nspec: {uri: 'sim://h2'}")
    assert replanned(trace, _edited(request, {key("host/h2"): host})) is None
    assert replanned(trace, _edited(request, {key("vm/vm7"): _one(_vm("vm7"))})) is None
    down = world.with_host("h2", HostLiveState.ERROR)
    assert replanned(trace, _edited(request, {}, live=down.live)) is None
    listed = dataclasses.replace(world.live, objects={"h1": frozenset({("network", "lan")})})
    assert replanned(trace, _edited(request, {}, live=listed)) is None
    assert replanned(trace, _edited(request, {}, prune=True)) is None
    base = documents(BASE)
    assert all(document is not base[k] for k, document in request.documents.items() if k in base)


def test_a_record_rewritten_is_planned_again_alone_unless_its_addresses_moved() -> None:
    request, trace = _traced(_start())
    record = request.records[key("vm/vm2")]
    assert isinstance(record, ResourceRecord)
    moved = dataclasses.replace(record, status="updating")
    again = replanned(trace, dataclasses.replace(request, records={**request.records, key("vm/vm2"): moved}))
    assert again == Replan(frozenset({key("vm/vm2")}))
    elsewhere = dataclasses.replace(record, host="h1" if record.host == "h2" else "h2")
    again = replanned(trace, dataclasses.replace(request, records={**request.records, key("vm/vm2"): elsewhere}))
    assert again == Replan(frozenset({key("vm/vm2")}), placing=True)  # where it stays is placement's to say
    nics = [{"network": "lan", "ip": "10.0.0.19"}]
    readdressed = dataclasses.replace(record, applied={**(record.applied or {}), "nics": nics})
    records = {**request.records, key("vm/vm2"): readdressed}
    assert replanned(trace, dataclasses.replace(request, records=records)) is None


def test_a_refused_repair_is_judged_again_when_the_vm_holding_its_object_changes() -> None:
    # vm/web's disk is an overlay of image/debian, whose volume changed on h1: its repair there is refused while
    # the VM holds it. The VM then becomes a full copy (its record rewritten, nothing it shares moved): the repair
    # is no longer refused, although neither the image's manifest nor its record changed.
    world = converge(BASE, vm())
    image = key("image/debian")
    imported = dataclasses.replace(world.records[image], live={"format": "qcow2", "size": 2 * 1024**3})
    world = dataclasses.replace(world, records={**world.records, image: imported})
    as_imported = {("volume", "image-debian"): {"format": "qcow2", "size": "2Gi"}}
    world = listed(world, {"h1": {("volume", "image-debian"): {"format": "raw", "size": "2Gi"}}, "h2": as_imported})
    request, trace = _traced(world)
    assert [str(item.key) for item in plan_with_specs(request)[0].drift] == ["image/debian"]

    web = key("vm/web")
    record = request.records[web]
    assert isinstance(record, ResourceRecord) and record.applied is not None
    disks = [{**record.applied["disks"][0], "clone": "full"}]
    copied = dataclasses.replace(record, applied={**record.applied, "disks": disks})
    full = _one(vm(**{OVERLAY: FULL}))
    edited = dataclasses.replace(
        request, documents={**request.documents, web: full}, records={**request.records, web: copied}
    )
    assert replanned(trace, edited) == Replan(frozenset({web, image}))
    plan, specs, _ = plan_again(edited, trace)
    _same((plan, specs), plan_with_specs(edited))
    assert plan.drift == ()
    assert sorted(str(action.host) for action in actions_of(plan, "image/debian")) == ["h1", "h1"]  # delete, import


def test_a_vm_stopped_outside_is_planned_again_alone_and_usage_figures_plan_nothing_again() -> None:
    world = _start()
    request, trace = _traced(world)
    stopped = world.with_vm(key("vm/vm1"), state=VMLiveState.STOPPED).live
    assert replanned(trace, _edited(request, {}, live=stopped)) == Replan(frozenset({key("vm/vm1")}))
    plan, specs, _ = plan_again(_edited(request, {}, live=stopped), trace)
    _same((plan, specs), plan_with_specs(_edited(request, {}, live=stopped)))
    assert [(str(c.key), [d.message for d in c.drift]) for c in plan.changes if c.is_change] == [
        ("vm/vm1", ["was stopped"])
    ]
    busy = world.with_vm(key("vm/vm1"), cpu_usage=1.5, memory_used=10**9).live
    assert replanned(trace, _edited(request, {}, live=busy)) == Replan(frozenset())


def _hosts_busier(live: LiveView, usage: float) -> LiveView:
    return dataclasses.replace(live, hosts={name: _busy(probe, usage) for name, probe in live.hosts.items()})


def test_usage_figures_of_the_hosts_place_no_vm_again_while_every_vm_stays_where_it_is() -> None:
    world = _start()
    request, trace = _traced(world)
    assert trace.shared.stayed  # converged: every VM is on the host its record names
    busier = _edited(request, {}, live=_hosts_busier(world.live, 0.7))
    assert replanned(trace, busier) == Replan(frozenset())
    _same(plan_again(busier, trace)[:2], plan_with_specs(busier))
    # What a VM that stays reads of its host moved: every VM is placed again.
    smaller = _edited(request, {}, live=_small(busier.live))
    assert replanned(trace, smaller) == Replan(frozenset(), placing=True)


@pytest.mark.parametrize(
    ("where", "stays"),
    [
        pytest.param(5, True, id="requirements that read the load"),
        pytest.param(4, False, id="a new VM placed by load"),
    ],
)
def test_usage_figures_place_every_vm_again_where_some_vm_reads_them(where: int, stays: bool) -> None:
    # A VM whose requirements read the load moves off its host once they fail there; a VM not yet created goes
    # to the least loaded host, which the usage figures tell.
    world = _start()
    if stays:
        world = converge(
            *[BASE, *(_vm(name, where=index % FIRST_PLACEMENTS) for index, name in enumerate(NAMES[:5]))],
            _vm("vm5", where=where),
        )
    request, _ = _traced(world)
    if not stays:
        request = _edited(request, {key("vm/vm7"): _one(_vm("vm7", where=where))})
    _, _, trace = plan_again(request, None)
    assert trace is not None and trace.shared.stayed is stays
    for usage in (0.2, 0.7):  # the load requirement holds, then fails; h2 busier, then h1
        hosts = dict(request.live.hosts)
        hosts["h1"] = _busy(hosts["h1"], usage)
        hosts["h2"] = _busy(hosts["h2"], 0.9 - usage)
        busier = _edited(request, {}, live=dataclasses.replace(request.live, hosts=hosts))
        found = replanned(trace, busier)
        assert found is not None and found.placing
        _plans(busier, trace)


# --- a trace kept between processes ---------------------------------------------------------------------------------


class _Stamps:
    """Each manifest's stamp, as the manifest cache gives them: a new one whenever a document is read from other
    text (here: whenever the step made a new object, an identical copy included)."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[AnyManifest, str]] = {}  # the documents are held, so their ids stay theirs

    def of(self, documents: Mapping[ResourceKey, AnyManifest]) -> dict[ResourceKey, str]:
        found = {}
        for document_key, document in documents.items():
            held = self._seen.get(id(document))
            if held is None:
                held = self._seen[id(document)] = (document, f"text-{len(self._seen)}")
            found[document_key] = held[1]
        return found


def _kept(trace: PlanTrace | None, stamps: dict[ResourceKey, str], unkept: frozenset[ResourceKey]) -> PlanTrace | None:
    """``trace`` as another process reads it back: kept, pickled, read."""
    if trace is None:
        return None
    lean = kept_trace(trace, stamps, unkept & trace.specs.keys())
    assert lean is not None and lean.request is None
    read = pickle.loads(pickle.dumps(lean))
    assert isinstance(read, PlanTrace)
    return read


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(STEPS, min_size=1, max_size=12),
    prune=st.booleans(),
    small=st.booleans(),
    unkept=st.sets(st.sampled_from(NAMES), max_size=3),
)
def test_a_plan_made_from_a_kept_trace_is_the_whole_plan(
    steps: list[tuple[str, str, Any]], prune: bool, small: bool, unkept: set[str]
) -> None:
    # As the CLI keeps it: the trace of each whole plan, for the plans after it, told which records are no longer
    # those it read (compared here by value, where the CLI compares digests of the rows); with a record more or
    # less, the controller finds no trace: the next plan is whole, and its trace is kept.
    world = _start()
    live = _small(world.live) if small else world.live
    state = _State(dict(world.documents), dict(world.records), live, {}, prune)
    stamps = _Stamps()
    secret = frozenset(key(f"vm/{name}") for name in unkept)  # as if their specs held a secret in clear
    request = state.request()
    kept = _kept(_plans(request, None), stamps.of(request.documents), secret)
    read = dict(state.records)
    for step in steps:
        _step(state, step)
        request = state.request()
        now = stamps.of(request.documents)
        same_keys = state.records.keys() == read.keys()
        moved = frozenset(k for k, r in read.items() if same_keys and state.records[k] != r)
        trace = _plans(request, with_moved_records(kept, moved) if kept is not None and same_keys else None, now)
        if trace is not None and trace.replanned is None:  # made whole: its trace is kept instead
            kept, read = _kept(trace, now, secret), dict(state.records)


def test_a_kept_trace_replans_the_edited_manifests_those_it_left_out_and_the_vms_that_moved() -> None:
    world = _start()
    request, trace = _traced(world)
    stamps = {document_key: f"text-{document_key}" for document_key in request.documents}
    kept = _kept(trace, stamps, frozenset({key("vm/vm3")}))
    assert kept is not None and kept.stamped is not None
    assert key("vm/vm3") not in kept.specs  # never written: its spec holds a secret
    # No VM planned again for its live state: the trace's results hold for this view (``view_holds``).
    assert replanned(kept, request, stamps) == Replan(frozenset({key("vm/vm3")}), view_holds=True)

    # The same manifest read from other text (an identical copy): planned again, nothing shared moved.
    assert replanned(kept, request, {**stamps, key("vm/vm1"): "other"}) == Replan(
        frozenset({key("vm/vm1"), key("vm/vm3")}), view_holds=True
    )
    grown = _edited(request, {key("vm/vm1"): _one(_vm("vm1", vcpu=4, where=1))})
    expected = Replan(frozenset({key("vm/vm1"), key("vm/vm3")}), placing=True, view_holds=True)
    assert replanned(kept, grown, {**stamps, key("vm/vm1"): "other"}) == expected
    plan, specs, _ = plan_again(grown, kept, {**stamps, key("vm/vm1"): "other"})
    _same((plan, specs), plan_with_specs(grown))

    stopped = world.with_vm(key("vm/vm2"), state=VMLiveState.STOPPED).live
    assert replanned(kept, _edited(request, {}, live=stopped), stamps) == Replan(
        frozenset({key("vm/vm2"), key("vm/vm3")})  # vm2 planned again for its live state: the view does not hold
    )

    # Without the stamps, with a manifest more or less, or other options: the whole plan.
    assert replanned(kept, request, None) is None
    assert replanned(kept, request, {k: v for k, v in stamps.items() if k != key("vm/vm1")}) is None
    assert replanned(kept, _edited(request, {}, prune=True), stamps) is None
    down = world.with_host("h2", HostLiveState.ERROR).live
    assert replanned(kept, _edited(request, {}, live=down), stamps) is None
