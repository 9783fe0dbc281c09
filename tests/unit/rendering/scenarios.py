"""Representative plans for the renderer tests, made by the real (pure) planner from the example manifests.

Each scenario starts from ``manifests/examples``: either a fresh state, or the state right after that set was
applied (records holding the specs the planner resolved, and a live view where every host answers and every VM
runs as applied). It then edits the manifests (plain dicts, edited as a user would edit the YAML) or the live
view (what happened outside nebctl), and plans. No database, driver or clock is involved.
"""

from __future__ import annotations

import copy
import functools
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML

from nebctl.controller.planning import PlanRequest, plan_with_specs
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import Plan
from nebctl.database.records import ResourceRecord
from nebctl.drivers.states import HostLiveState, VMLiveState
from nebctl.drivers.types import HostProbe, Ownership, VMStatus
from nebctl.reconcilers.base import LiveView
from nebctl.reconcilers.identity import live_name, vm_uuid
from nebctl.reconcilers.vm import deposition
from nebctl.schemas import models
from nebctl.schemas.loading import load_text

EXAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "examples"
STACK = "examples"
GiB = 1024**3

# Recognisable secrets: the tests grep every rendered output for them.
OLD_SECRET = "OLD-SECRET-c4f1e9-do-not-print"
NEW_SECRET = "NEW-SECRET-7b2d05-do-not-print"
SECRETS = (OLD_SECRET, NEW_SECRET)

Documents = dict[str, dict[str, Any]]  # "vm/web-1" -> the manifest as plain data


def example_documents() -> Documents:
    """A fresh copy of the example manifests, for a scenario to edit."""
    return copy.deepcopy(_example_documents())


@functools.cache
def _example_documents() -> Documents:
    documents: Documents = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in _yaml().load_all(path.read_text(encoding="utf-8")):
            key = ResourceKey.of(Kind(document["kind"]), document["metadata"]["name"])
            documents[str(key)] = document
    return documents


_MODELS: dict[Kind, type[BaseModel]] = {
    Kind.HOST: models.Host,
    Kind.DATASTORE: models.Datastore,
    Kind.MARKETPLACE: models.Marketplace,
    Kind.IMAGE: models.Image,
    Kind.NETWORK: models.Network,
    Kind.SECURITY_GROUP: models.SecurityGroup,
    Kind.VIRTUAL_MACHINE: models.VirtualMachine,
    Kind.HOOK: models.Hook,
}


def load(documents: Documents) -> dict[ResourceKey, Any]:
    """The manifests as models. Validating each document with its model directly is ten times faster than the
    YAML loader (whose positions these tests do not need); ``test_scenarios`` checks that both agree."""
    loaded = {}
    for document in documents.values():
        kind = Kind(document["kind"])
        loaded[ResourceKey.of(kind, document["metadata"]["name"])] = _MODELS[kind].model_validate(document)
    return loaded


def load_with_loader(documents: Documents) -> dict[ResourceKey, Any]:
    """The same through nebctl's YAML loader, as ``nebctl diff -f`` reads files."""
    text = io.StringIO()
    _yaml().dump_all(list(documents.values()), text)
    return dict(load_text(text.getvalue()).documents)


def _yaml() -> YAML:
    return YAML(typ="safe", pure=True)  # YAML 1.2, as nebctl's loader: ``on:`` is a key, not a boolean


def online_hosts() -> dict[str, HostProbe]:
    return {
        name: HostProbe(
            name,
            HostLiveState.ONLINE,
            cpus=32,
            memory=128 * GiB,
            free_memory=120 * GiB,
            disk_total=2048 * GiB,
            disk_free=2000 * GiB,
        )
        for name in ("kvm-a1", "kvm-a2", "kvm-b1", "kvm-b2")
    }


@dataclass
class State:
    """What the database and monitoring say; tests edit it before planning."""

    records: dict[ResourceKey, ResourceRecord] = field(default_factory=dict)
    hosts: dict[str, HostProbe] = field(default_factory=online_hosts)
    vms: dict[str, VMStatus] = field(default_factory=dict)
    vm_hosts: dict[str, str] = field(default_factory=dict)

    def live(self) -> LiveView:
        return LiveView(hosts=self.hosts, vms=self.vms, vm_hosts=self.vm_hosts)


def plan(documents: Documents, state: State, *, prune: bool = False) -> Plan:
    request = PlanRequest(stack=STACK, documents=load(documents), records=state.records, live=state.live(), prune=prune)
    return plan_with_specs(request)[0]


def applied_state(documents: Documents) -> State:
    """The state right after ``documents`` were applied on a fresh fleet."""
    fresh = State()
    request = PlanRequest(stack=STACK, documents=load(documents), records={}, live=fresh.live())
    _, specs = plan_with_specs(request)
    state = State()
    for key, spec in specs.items():
        is_vm = key.kind is Kind.VIRTUAL_MACHINE
        uuid = vm_uuid(key)
        state.records[key] = ResourceRecord(
            kind=key.kind,
            namespace=key.namespace,
            name=key.name,
            stack=STACK,
            applied=spec,
            status="ready",
            live={"uuid": uuid} if is_vm else {},
            host=spec["host"] if is_vm else None,
        )
        if is_vm:
            running = spec["state"] == "running"
            state.vms[uuid] = VMStatus(
                uuid,
                live_name(key),
                VMLiveState.RUNNING if running else VMLiveState.STOPPED,
                vcpu=spec["vcpu"],
                memory=spec["memory"],
                # nebctl created it, so the live VM carries its ownership (as the drivers write it).
                owner=Ownership(stack=STACK, kind=key.kind.value, namespace=key.namespace, name=key.name),
            )
            state.vm_hosts[uuid] = spec["host"]
    return state


def vm_key(name: str) -> ResourceKey:
    return ResourceKey.of(Kind.VIRTUAL_MACHINE, name)


# --- the scenarios ------------------------------------------------------------------------------------------


def create_everything() -> Plan:
    """The example manifests on a fresh state: every resource is created."""
    return plan(example_documents(), State())


def no_changes() -> Plan:
    documents = example_documents()
    return plan(documents, applied_state(documents))


def update_in_place() -> Plan:
    """web-3 is stopped by the manifest and batch-1 migrates (both in place); the hook's timeout changes."""
    documents = example_documents()
    state = applied_state(documents)
    documents["vm/web-3"]["spec"]["state"] = "stopped"
    documents["vm/batch-1"]["spec"]["placement"]["host"] = "kvm-a2"
    documents["hook/notify-ops"]["spec"]["timeout"] = "30s"
    return plan(documents, state)


def update_with_restart() -> Plan:
    """web-1 gets more memory and vCPUs, and a bigger disk: stop, change, start."""
    documents = example_documents()
    state = applied_state(documents)
    spec = documents["vm/web-1"]["spec"]
    spec["memory"] = "4Gi"
    spec["vcpu"] = 4
    spec["disks"][0]["size"] = "40Gi"
    return plan(documents, state)


def replacement() -> Plan:
    """web-2's disk changes its image: the VM is deleted and created anew."""
    documents = example_documents()
    state = applied_state(documents)
    documents["vm/web-2"]["spec"]["disks"][0]["image"] = "alpine-3-20"
    return plan(documents, state)


def replacement_create_first() -> Plan:
    """The same replacement of web-2, asked create-first: the new VM (incarnation 1) runs before the old one,
    deposed as vm/web-2~0, is deleted."""
    documents = example_documents()
    documents["vm/web-2"]["spec"]["lifecycle"] = {"createBeforeDestroy": True}
    state = applied_state(documents)
    documents["vm/web-2"]["spec"]["disks"][0]["image"] = "alpine-3-20"
    return plan(documents, state)


def replacement_create_first_interrupted() -> Plan:
    """That create-first replacement died after the journal deposed the old VM: the new one is created again
    (its incarnation kept) and the deposed one deleted after it."""
    documents = example_documents()
    documents["vm/web-2"]["spec"]["lifecycle"] = {"createBeforeDestroy": True}
    state = applied_state(documents)
    documents["vm/web-2"]["spec"]["disks"][0]["image"] = "alpine-3-20"
    web2 = vm_key("web-2")
    record = state.records[web2]
    deposed, deposed_live, successor_live = deposition(web2, record.live)
    state.records[deposed] = replace(record, name=deposed.name, status="deleting", live=deposed_live)
    state.records[web2] = replace(record, applied=None, status="creating", live=successor_live)
    return plan(documents, state)


def removed_with_prune() -> Plan:
    """web-3 and the hook left the manifests; --prune deletes them."""
    documents = example_documents()
    state = applied_state(documents)
    del documents["vm/web-3"], documents["hook/notify-ops"]
    return plan(documents, state, prune=True)


def removed_without_prune() -> Plan:
    """The same removal without --prune: nothing is deleted, and the plan warns."""
    documents = example_documents()
    state = applied_state(documents)
    del documents["vm/web-3"], documents["hook/notify-ops"]
    return plan(documents, state)


def drift() -> Plan:
    """Outside nebctl: web-2 was stopped, web-3 was deleted, and kvm-a1 stopped answering."""
    documents = example_documents()
    state = applied_state(documents)
    web2, web3 = vm_uuid(vm_key("web-2")), vm_uuid(vm_key("web-3"))
    state.vms[web2] = replace(state.vms[web2], state=VMLiveState.STOPPED)
    del state.vms[web3], state.vm_hosts[web3]
    state.hosts["kvm-a1"] = HostProbe("kvm-a1", HostLiveState.ERROR, error="connection refused")
    return plan(documents, state)


def interrupted() -> Plan:
    """An apply died: cache-1's create never finished, and a pruned web-3 was half deleted."""
    documents = example_documents()
    state = applied_state(documents)
    cache = vm_key("cache-1")
    state.records[cache] = replace(state.records[cache], applied=None, status="creating")
    web3 = vm_key("web-3")
    state.records[web3] = replace(state.records[web3], status="deleting")
    del documents["vm/web-3"]
    return plan(documents, state)


def secret_change() -> Plan:
    """web-2's cloud-init user data (a secret) changes: a replacement whose values must never print."""
    documents = example_documents()
    state = applied_state(documents)
    web2 = vm_key("web-2")
    applied = dict(state.records[web2].applied or {})
    applied["cloudInit"] = {
        "userData": f"#cloud-config\npassword: {OLD_SECRET}\n",
        "metaData": None,
        "networkConfig": None,
    }
    state.records[web2] = replace(state.records[web2], applied=applied)
    documents["vm/web-2"]["spec"]["cloudInit"] = {"userData": f"#cloud-config\npassword: {NEW_SECRET}\n"}
    return plan(documents, state)


def secret_create() -> Plan:
    """A fresh state where a VM carries secret cloud-init data and the hook a secret environment value."""
    documents = example_documents()
    documents["vm/web-2"]["spec"]["cloudInit"] = {"userData": f"#cloud-config\npassword: {NEW_SECRET}\n"}
    documents["hook/notify-ops"]["spec"]["env"]["API_TOKEN"] = OLD_SECRET
    return plan(documents, State())


SCENARIOS: Mapping[str, Callable[[], Plan]] = {
    "create-everything": create_everything,
    "no-changes": no_changes,
    "update-in-place": update_in_place,
    "update-with-restart": update_with_restart,
    "replacement": replacement,
    "replacement-create-first": replacement_create_first,
    "replacement-create-first-interrupted": replacement_create_first_interrupted,
    "removed-with-prune": removed_with_prune,
    "removed-without-prune": removed_without_prune,
    "drift": drift,
    "interrupted": interrupted,
    "secret-change": secret_change,
    "secret-create": secret_create,
}
