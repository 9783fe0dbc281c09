"""A pure, in-memory stand-in for "the state after a successful apply", for the planner's decision tables.

``converge`` plans a manifest set from nothing and builds what the controller would have recorded had every
action succeeded (records whose ``applied`` is the resolved spec of ``plan_with_specs``) and what monitoring
would then see (every host online, every VM in its applied state). Tests then edit the manifests, the records
or the live view and call ``make_plan`` again: the planner itself is never mocked, only its inputs are built
by hand.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from nebctl.controller.planning import PlanRequest, make_plan, plan_with_specs
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Action, ChangeType, Plan, ResourceChange
from nebctl.database.records import ResourceRecord
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe, Ownership, VMStatus
from nebctl.reconcilers.base import LiveView
from nebctl.reconcilers.identity import VMIdentity
from nebctl.schemas.loading import load_text
from nebctl.schemas.models import AnyManifest

STACK = "demo"
GiB = 1024**3

# Two hosts, a datastore on both, two images, a network and a security group: the usual surroundings of a VM.
BASE = """
apiVersion: nebctl/v1
kind: Host
metadata: {name: h1}
spec: {uri: "sim://h1"}
---
apiVersion: nebctl/v1
kind: Host
metadata: {name: h2}
spec: {uri: "sim://h2"}
---
apiVersion: nebctl/v1
kind: Datastore
metadata: {name: local}
spec: {type: dir, path: /var/lib/ds/local}
---
apiVersion: nebctl/v1
kind: Image
metadata: {name: debian}
spec: {source: /images/debian.qcow2, format: qcow2, datastore: local}
---
apiVersion: nebctl/v1
kind: Image
metadata: {name: alpine}
spec: {source: /images/alpine.qcow2, format: qcow2, datastore: local}
---
apiVersion: nebctl/v1
kind: Network
metadata: {name: lan}
spec: {mode: nat, cidr: 10.0.0.0/24, range: {first: 10.0.0.10, last: 10.0.0.20}}
---
apiVersion: nebctl/v1
kind: SecurityGroup
metadata: {name: ssh}
spec:
  rules:
    - {direction: in, protocol: tcp, ports: [22]}
"""

VM = """
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {{name: {name}, labels: {{app: web}}}}
spec:
  vcpu: 2
  memory: 2Gi
  disks:
    - {{image: debian, size: 10Gi}}
  nics:
    - {{network: lan, securityGroups: [ssh]}}
  placement: {{host: h1}}
"""

# Host capacity as the sim driver reports it by default, generous enough for every table.
HOST_CPUS = 64
HOST_MEMORY = 256 * GiB


def vm(name: str = "web", **replace: str) -> str:
    """The standard VM document; ``replace`` maps a line of it to its substitute (``"vcpu: 2"="vcpu: 4"``)."""
    text = VM.format(name=name)
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def without(text: str, *names: str) -> str:
    """``text`` without the documents whose ``metadata`` line names one of ``names``."""
    parts = text.split("\n---\n")
    return "\n---\n".join(part for part in parts if not any(f"{{name: {name}}}" in part for name in names))


def documents(*texts: str) -> dict[ResourceKey, AnyManifest]:
    """Validated documents from YAML texts (joined as one multi-document stream)."""
    joined = "\n---\n".join(textwrap.dedent(text).strip() for text in texts if text.strip())
    return dict(load_text(joined).documents)


def probe(name: str, state: HostLiveState = HostLiveState.ONLINE) -> HostProbe:
    return HostProbe(
        name=name,
        state=state,
        cpus=HOST_CPUS,
        memory=HOST_MEMORY,
        free_memory=HOST_MEMORY,
        disk_total=10 * 1024 * GiB,
        disk_free=10 * 1024 * GiB,
    )


def online(hosts: Iterable[str]) -> LiveView:
    return LiveView(hosts={name: probe(name) for name in hosts})


def _live_state(state: str) -> VMLiveState:
    return {"running": VMLiveState.RUNNING, "stopped": VMLiveState.STOPPED, "suspended": VMLiveState.SUSPENDED}[state]


@dataclass
class World:
    """Records and live view as they are after a successful apply of ``documents``."""

    documents: dict[ResourceKey, AnyManifest]
    records: dict[ResourceKey, ResourceRecord]
    live: LiveView
    stack: str = STACK
    hosts: tuple[str, ...] = field(default=())

    def request(
        self,
        docs: Mapping[ResourceKey, AnyManifest] | None = None,
        **options: Any,
    ) -> PlanRequest:
        return PlanRequest(
            stack=options.pop("stack", self.stack),
            documents=self.documents if docs is None else docs,
            records=options.pop("records", self.records),
            live=options.pop("live", self.live),
            **options,
        )

    def plan(self, *texts: str, **options: Any) -> Plan:
        """The plan of ``texts`` (the manifests after an edit) against this world; no texts: the same ones."""
        return make_plan(self.request(documents(*texts) if texts else None, **options))

    def with_vm(self, key: ResourceKey, **changes: Any) -> World:
        """The same world, with the live status of VM ``key`` changed (``state``, ``vcpu``, ``memory``), or
        gone when ``changes`` is ``{"gone": True}``."""
        uuid = VMIdentity.recorded(key, self.records[key].live).uuid
        vms = dict(self.live.vms)
        vm_hosts = dict(self.live.vm_hosts)
        if changes.pop("gone", False):
            vms.pop(uuid)
            vm_hosts.pop(uuid)
        else:
            vms[uuid] = dataclasses.replace(vms[uuid], **changes)
        return dataclasses.replace(self, live=LiveView(hosts=self.live.hosts, vms=vms, vm_hosts=vm_hosts))

    def with_host(self, name: str, state: HostLiveState) -> World:
        hosts = dict(self.live.hosts)
        hosts[name] = probe(name, state)
        vms = {u: s for u, s in self.live.vms.items() if state is HostLiveState.ONLINE or self.live.vm_hosts[u] != name}
        vm_hosts = {u: h for u, h in self.live.vm_hosts.items() if u in vms}
        return dataclasses.replace(self, live=LiveView(hosts=hosts, vms=vms, vm_hosts=vm_hosts))


def applied(request: PlanRequest, *, previous: Mapping[ResourceKey, ResourceRecord] | None = None) -> World:
    """The world after every change of ``request``'s plan succeeded, as ``Controller.apply`` records it."""
    plan, specs = plan_with_specs(request)
    # The records a test hands in are the database's own (``ResourceRecord``), as the controller's are.
    records = cast(dict[ResourceKey, ResourceRecord], dict(previous if previous is not None else request.records))
    for change in plan.changes:
        if change.type is ChangeType.DELETE:
            records.pop(change.key, None)
        elif change.is_change:
            before = records.get(change.key)
            incarnation = VMIdentity.recorded(change.key, before.live).incarnation if before is not None else 0
            incarnation += 1 if change.create_first else 0  # the new VM of a create-first replacement
            records[change.key] = record_for(change.key, specs[change.key], request.stack, incarnation)
    host_names = sorted({key.name for key in request.documents if key.kind is Kind.HOST})
    vms: dict[str, VMStatus] = {}
    vm_hosts: dict[str, str] = {}
    for key, record in records.items():
        if key.kind is Kind.VIRTUAL_MACHINE and record.applied is not None and record.stack == request.stack:
            uuid = VMIdentity.recorded(key, record.live).uuid
            vms[uuid] = VMStatus(
                uuid=uuid,
                name=key.name,
                state=_live_state(record.applied["state"]),
                vcpu=record.applied["vcpu"],
                memory=record.applied["memory"],
                owner=Ownership(request.stack, key.kind.value, key.namespace, key.name),  # as nebctl writes it
            )
            vm_hosts[uuid] = str(record.host)
    live = LiveView(hosts={name: probe(name) for name in host_names}, vms=vms, vm_hosts=vm_hosts)
    return World(dict(request.documents), records, live, request.stack, tuple(host_names))


def record_for(key: ResourceKey, spec: dict[str, Any], stack: str = STACK, incarnation: int = 0) -> ResourceRecord:
    host = spec.get("host") if key.kind is Kind.VIRTUAL_MACHINE else None
    live: dict[str, Any] = {}
    if key.kind is Kind.VIRTUAL_MACHINE:
        live = {"uuid": VMIdentity.of(key, incarnation).uuid, **({"incarnation": incarnation} if incarnation else {})}
    return ResourceRecord(
        kind=key.kind,
        namespace=key.namespace,
        name=key.name,
        stack=stack,
        applied=spec,
        status=str(spec.get("state", "ready")) if key.kind is Kind.VIRTUAL_MACHINE else "ready",
        live=live,
        host=host,
    )


def converge(*texts: str, stack: str = STACK) -> World:
    """The world after applying ``texts`` to an empty fleet (hosts online from the start)."""
    docs = documents(*texts)
    hosts = sorted(key.name for key in docs if key.kind is Kind.HOST)
    world = applied(PlanRequest(stack=stack, documents=docs, records={}, live=online(hosts)))
    # Sanity: a converged world plans no change, otherwise every table below would test the wrong thing.
    again = make_plan(world.request())
    assert not again.has_changes, [c for c in again.changes if c.is_change]
    return world


# --- reading plans ----------------------------------------------------------------------------------------


def key(text: str) -> ResourceKey:
    return ResourceKey.parse(text)


def change_of(plan: Plan, text: str) -> ResourceChange:
    wanted = key(text)
    for change in plan.changes:
        if change.key == wanted:
            return change
    raise AssertionError(f"{text} is not in the plan: {[str(c.key) for c in plan.changes]}")


def operations(plan: Plan, text: str | None = None) -> list[str]:
    """The operations of a resource's actions (all resources when ``text`` is None), in a topological order
    that breaks ties by action id, so the list is stable."""
    import networkx as nx

    graph = plan.graph()
    order = list(nx.lexicographical_topological_sort(graph))
    actions = {action.id: action for action in plan.actions}
    wanted = key(text) if text else None
    return [actions[i].operation for i in order if wanted is None or actions[i].key == wanted]


def actions_of(plan: Plan, text: str) -> list[Action]:
    wanted = key(text)
    return [action for action in plan.actions if action.key == wanted]


def precedes(plan: Plan, before: str, after: str) -> bool:
    """Whether action ``before`` must finish before ``after`` starts (a path in the graph)."""
    import networkx as nx

    return bool(nx.has_path(plan.graph(), before, after))


def colliding_long_names(prefix: str = "a" * 54) -> tuple[str, str]:
    """Two VM names of 63 characters (the longest) whose deposed keys shorten alike when nothing is taken:
    found by trying names, as the 24 bits of digest in a shortened name make certain within some thousands."""
    from nebctl.reconcilers.identity import deposed_key

    seen: dict[str, str] = {}
    for number in range(1_000_000):
        name = f"{prefix}{number:0{63 - len(prefix)}d}"
        shortened = deposed_key(ResourceKey.parse(f"vm/{name}"), 0).name
        if shortened in seen:
            return seen[shortened], name
        seen[shortened] = name
    raise AssertionError("no collision found")
