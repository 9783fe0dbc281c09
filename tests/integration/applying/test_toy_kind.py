"""A kind's rules live in its reconciler alone: a toy reconciler, written here, is planned and applied by the
unchanged planner, executor and journal.

The toy stands in for the Marketplace kind (a new kind would add its manifest model and a ``Kind`` member;
everything else it needs is here). It is a "beacon" lit on one host and tied to a network, both named in its
labels: it declares those references, the phase of each of its actions, and what its record holds once lit.
What is checked comes from the toy's own declarations, written out by hand: the planner records what its
``resolve`` settled for the plan, refuses what its ``still_uses`` forbids, and orders its actions by its
references and phases, the executor calls its ``realise``, and the journal records its host, its status and
its usage. Nothing outside this file knows a beacon.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from nebctl.controller.applying import Controller, PlanOptions
from nebctl.controller.planning import PlanError
from nebctl.core.families import Family
from nebctl.core.fields import Effect, FieldChange, FieldRule
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Action, ChangeType, Phase, ResourceChange
from nebctl.database.records import ApplyState
from nebctl.drivers.registry import build_registry
from nebctl.reconcilers.base import (
    ActionGroup,
    Deposition,
    Finished,
    LiveView,
    Observed,
    PlanInputs,
    PlanningContext,
    RecordView,
    Removals,
    Resolution,
    SharedInputs,
    Usage,
    World,
    action_id,
)
from nebctl.reconcilers.catalogue import RECONCILERS
from nebctl.schemas.models import AnyManifest, spec_document
from nebctl.schemas.references import Reference
from tests.support.drills import Workspace

MANIFESTS = """
apiVersion: nebctl/v1
kind: Host
metadata: {{name: h1}}
spec: {{uri: "sim://h1"}}
---
apiVersion: nebctl/v1
kind: Network
metadata: {{name: lan}}
spec: {{mode: nat, cidr: {cidr}}}
---
apiVersion: nebctl/v1
kind: Marketplace
metadata: {{name: beacon, labels: {{host: h1, network: lan}}}}
spec: {{url: "{url}"}}
"""


class Beacon:
    """The toy kind's reconciler: every rule of the kind, and nothing else anywhere."""

    kind = Kind.MARKETPLACE
    rules: Sequence[FieldRule] = [FieldRule("url", Effect.REPLACE, "a beacon is lit anew for another URL")]
    default = FieldRule("", Effect.NONE, "recorded only")
    sensitive: Sequence[str] = ()
    placed = True
    per_host = False

    def __init__(self) -> None:
        self.realised: list[str] = []

    def references(self, key: ResourceKey, spec: Mapping[str, Any]) -> list[Reference]:
        return [
            Reference(("host",), ResourceKey.of(Kind.HOST, spec["host"])),
            Reference(("network",), ResourceKey.of(Kind.NETWORK, spec["network"], key.namespace)),
        ]

    def span(
        self,
        key: ResourceKey,
        document: AnyManifest,
        documents: Mapping[ResourceKey, AnyManifest],
        hosts: Sequence[str],
    ) -> tuple[str, ...] | None:
        return None

    def resolve(
        self,
        request: PlanInputs,
        own: Mapping[ResourceKey, RecordView],
        *,
        spans: Mapping[ResourceKey, tuple[str, ...]],
        placements: Mapping[ResourceKey, str],
        incarnations: Mapping[ResourceKey, int],
        deposing: frozenset[ResourceKey],
        problems: list[str],
    ) -> Resolution:
        # Settled for the whole plan first, as a VM's leases are: each beacon of the manifests gets a slot.
        beacons = sorted(key for key in request.documents if key.kind is self.kind)
        return Resolution(leases={(key, 0): f"slot-{index}" for index, key in enumerate(beacons, start=1)})

    def desired_spec(self, key: ResourceKey, document: AnyManifest, ctx: PlanningContext) -> dict[str, Any]:
        labels = document.metadata.labels
        spec = {**spec_document(document), "host": labels["host"], "network": labels["network"]}
        return {**spec, "slot": ctx.leases[(key, 0)]}

    def detect_drift(self, key: ResourceKey, record: RecordView, live: LiveView) -> Observed:
        return Observed(spec=record.applied)

    def _action(self, key: ResourceKey, operation: str, host: str, *parts: str) -> Action:
        return Action(action_id(key, operation, *parts), key, Family.MONITORING, operation, host, {}, operation)

    def still_uses(
        self,
        key: ResourceKey,
        record: RecordView,
        document: AnyManifest | None,
        specs: Mapping[ResourceKey, Mapping[str, Any]],
        removals: Removals,
    ) -> list[str]:
        assert record.applied is not None
        network = ResourceKey.of(Kind.NETWORK, str(record.applied["network"]), key.namespace)
        if network in removals.going:
            return [f"{network}: a lit beacon ({key}) still shines on it"]
        return []

    def actions(self, change: ResourceChange, ctx: PlanningContext) -> ActionGroup:
        key = change.key
        record = ctx.records.get(key)
        old_host = str(record.applied["host"]) if record is not None and record.applied else None
        new_host = str(ctx.specs[key]["host"]) if key in ctx.specs else None
        if change.type is ChangeType.CREATE:
            assert new_host is not None
            return ActionGroup.of([self._action(key, "light", new_host)], Phase.BUILD)
        if change.type is ChangeType.DELETE:
            assert old_host is not None
            return ActionGroup.of([self._action(key, "dim", old_host)], Phase.DESTROY)
        if change.type is ChangeType.REPLACE:
            assert old_host is not None and new_host is not None
            dim, light = self._action(key, "dim", old_host), self._action(key, "light", new_host, "new")
            return ActionGroup((dim, light), ((dim.id, light.id),), (Phase.DESTROY, Phase.BUILD))
        return ActionGroup()

    def refusals(self, key: ResourceKey, fields: Sequence[FieldChange], effect: Effect) -> list[str]:
        return []

    def holds(self, key: ResourceKey, record: RecordView, target: ResourceKey) -> str | None:
        return None

    def ignored(self, document: AnyManifest) -> tuple[str, ...]:
        return ()

    def creates_first(self, document: AnyManifest) -> bool:
        return False

    def shared_inputs(self, document: AnyManifest) -> SharedInputs | None:
        return None  # its ``resolve`` reads every beacon: any edit of one plans everything again

    def shared_record_inputs(self, record: RecordView) -> SharedInputs | None:
        return None

    def depose(
        self, key: ResourceKey, live: Mapping[str, Any], taken: Container[ResourceKey] = frozenset()
    ) -> Deposition:
        raise ValueError("a beacon is never replaced create-first")

    def finished(self, spec: Mapping[str, Any]) -> Finished:
        return Finished(host=str(spec["host"]), status="lit", usage=Usage(vcpu=1, memory=2, disk=3))

    def realise(self, action: Action, world: World) -> Mapping[str, Any]:
        assert action.host is not None
        world.drivers(action.host).monitoring.probe_host(world.host_ref(action.host))  # a real driver call
        self.realised.append(action.id)
        return {"lit": action.operation == "light" or None}


def _workspace(root: Path, *, cidr: str, url: str) -> Workspace:
    manifests = root / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    (manifests / "beacon.yaml").write_text(MANIFESTS.format(cidr=cidr, url=url), encoding="utf-8")
    return Workspace(root / "ws", manifests=manifests, stack="toy")


def test_a_toy_kind_is_planned_applied_and_recorded_through_its_reconciler_alone(tmp_path: Path) -> None:
    beacon = Beacon()
    reconcilers = {**RECONCILERS, Kind.MARKETPLACE: beacon}
    workspace = _workspace(tmp_path, cidr="10.0.0.0/24", url="https://a.example/index")
    key = ResourceKey.of(Kind.MARKETPLACE, "beacon")
    with workspace.store() as store:
        controller = Controller(
            store=store,
            registry=build_registry(workspace.settings),
            settings=workspace.settings,
            reconcilers=reconcilers,
        )
        planned = controller.plan(workspace.documents(), PlanOptions(stack="toy"))
        ids = [action.id for action in planned.plan.actions]
        assert "marketplace/beacon:light" in ids
        # Lit once the host it names is registered and the network it names is created there.
        assert ("host/h1:probe_host", "marketplace/beacon:light") in planned.plan.edges
        assert ("network/lan:create:h1", "marketplace/beacon:light") in planned.plan.edges

        result = controller.apply(planned)
        assert result.state == ApplyState.SUCCEEDED
        assert beacon.realised == ["marketplace/beacon:light"]
        record = store.get_resource(key)
        assert record is not None
        assert (record.status, record.host, record.live.get("lit")) == ("lit", "h1", True)
        assert record.applied is not None and record.applied["slot"] == "slot-1"  # what its ``resolve`` settled
        (history,) = store.list_history(vm=key)
        assert (history.host, history.vcpu, history.memory, history.disk) == ("h1", 1, 2, 3)
        assert "marketplace.lit" in {event.type for event in store.list_events(key=key)}

        # Its network alone replaced: the beacon, which stays, still uses it, and says so (its ``still_uses``).
        moved = _workspace(tmp_path, cidr="10.9.0.0/24", url="https://a.example/index")
        with pytest.raises(PlanError) as refused:
            controller.plan(moved.documents(), PlanOptions(stack="toy"))
        assert refused.value.problems == ["network/lan: a lit beacon (marketplace/beacon) still shines on it"]

        # Both replaced: the beacon is dimmed before the network it used goes, and lit after the new one exists.
        replaced = _workspace(tmp_path, cidr="10.9.0.0/24", url="https://b.example/index")
        planned = controller.plan(replaced.documents(), PlanOptions(stack="toy"))
        changes = {str(change.key): change.type for change in planned.plan.changes}
        assert changes["marketplace/beacon"] is ChangeType.REPLACE
        assert changes["network/lan"] is ChangeType.REPLACE
        edges = set(planned.plan.edges)
        assert ("marketplace/beacon:dim", "network/lan:delete:h1") in edges
        assert ("network/lan:create:new:h1", "marketplace/beacon:light:new") in edges
        assert ("marketplace/beacon:dim", "marketplace/beacon:light:new") in edges
        assert controller.apply(planned).state == ApplyState.SUCCEEDED
        assert beacon.realised[1:] == ["marketplace/beacon:dim", "marketplace/beacon:light:new"]
        record = store.get_resource(key)
        assert record is not None and record.status == "lit"
        assert record.applied is not None and record.applied["url"] == "https://b.example/index"
