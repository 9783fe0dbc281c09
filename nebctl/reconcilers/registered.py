"""Kinds that nebctl records rather than builds: hosts, marketplaces and hooks.

A host already exists (nebctl does not install hypervisors): "creating" it means probing it once, so a host
that does not answer fails its own action and blocks only what would be placed on it. Marketplaces and hooks
are configuration: their changes are recorded, with no driver action.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nebctl.core.families import Family
from nebctl.core.fields import Effect, FieldRule
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Action, ChangeType, Phase, ResourceChange
from nebctl.drivers.errors import TemporaryError
from nebctl.drivers.states import HostLiveState
from nebctl.reconcilers.base import (
    METADATA_RULE,
    ActionGroup,
    LiveView,
    Observed,
    PlainKind,
    PlanningContext,
    RecordView,
    World,
    action_id,
)
from nebctl.schemas.models import AnyManifest, spec_document
from nebctl.schemas.references import BY_KIND, Reference


class RegisteredReconciler(PlainKind):
    sensitive: Sequence[str] = ()
    placed = False

    def __init__(self, *, kind: Kind, rules: Sequence[FieldRule], probe: bool, sensitive: Sequence[str] = ()) -> None:
        self.kind = kind
        self.rules = [METADATA_RULE, *rules]
        self.default = FieldRule("", Effect.NONE, "recorded only")
        self.sensitive = list(sensitive)
        self._probe = probe
        self.per_host = probe  # a host's one action is on itself

    def references(self, key: ResourceKey, spec: Mapping[str, Any]) -> list[Reference]:
        return BY_KIND[self.kind](key, spec)

    def span(
        self,
        key: ResourceKey,
        document: AnyManifest,
        documents: Mapping[ResourceKey, AnyManifest],
        hosts: Sequence[str],
    ) -> tuple[str, ...] | None:
        return None

    def desired_spec(self, key: ResourceKey, document: AnyManifest, ctx: PlanningContext) -> dict[str, Any]:
        return spec_document(document)

    def detect_drift(self, key: ResourceKey, record: RecordView, live: LiveView) -> Observed:
        return Observed(spec=record.applied)

    def actions(self, change: ResourceChange, ctx: PlanningContext) -> ActionGroup:
        if self._probe and change.type in (ChangeType.CREATE, ChangeType.REPLACE):
            probe = Action(
                id=action_id(change.key, "probe_host"),
                key=change.key,
                family=Family.MONITORING,
                operation="probe_host",
                host=change.key.name,
                description=f"register host {change.key.name} (probe it)",
            )
            return ActionGroup.of([probe], Phase.BUILD)
        return ActionGroup()

    def realise(self, action: Action, world: World) -> Mapping[str, Any]:
        assert action.host is not None
        probe = world.drivers(action.host).monitoring.probe_host(world.host_ref(action.host))
        if probe.state is HostLiveState.ERROR:
            raise TemporaryError(f"host {action.host} does not answer: {probe.error or 'no reason given'}")
        return {"cpus": probe.cpus, "memory": probe.memory}


HOST = RegisteredReconciler(
    kind=Kind.HOST,
    rules=[
        FieldRule("uri", Effect.IMMUTABLE, "a host's URI is its identity; remove the host and add a new one"),
        FieldRule("drivers", Effect.IMMUTABLE, "the VMs were created by the old drivers; drain and re-add the host"),
    ],
    probe=True,
)
MARKETPLACE = RegisteredReconciler(kind=Kind.MARKETPLACE, rules=[], probe=False)
HOOK = RegisteredReconciler(kind=Kind.HOOK, rules=[], probe=False, sensitive=["env"])
