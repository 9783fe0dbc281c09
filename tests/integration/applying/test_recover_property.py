"""Property: after any applied history, ``recover`` on a lost database gives back the records the database had,
and the plan of the next edit made after recovery is the plan made before the loss.

Hypothesis draws a manifest set on the simulated fleet (hosts, a network, a datastore, an image, VMs with random
sizes, states, labels, secrets, pinned or scheduled placements, some asking for create-first replacement) and a
history of edits applied one after the other (sizes, states, labels, a moved placement, a changed disk image,
which replaces the VM, create-first where asked). The records kept before the loss are the independent
statement of what is right: recovery is compared with them field by field, for what the ownership carries
(docs/ownership.md: applied spec, status, host, live ids, leases, incarnations; not the manifest's own text, the
generation counter or the timestamps).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nebctl import rendering
from nebctl.controller.applying import Controller, PlanOptions
from nebctl.core.keys import ResourceKey
from nebctl.database import Store
from nebctl.database.sealing import default_key_file, load_key_ring
from nebctl.drivers.registry import build_registry
from nebctl.schemas.loading import load_paths
from tests.support.drills import Workspace

HOSTS = ("h0", "h1", "h2")
IMAGES = ("base", "other")

vm_shape = st.fixed_dictionaries(
    {
        "vcpu": st.integers(1, 4),
        "memory": st.sampled_from(["256Mi", "512Mi", "1Gi"]),
        "state": st.sampled_from(["running", "stopped", "suspended"]),
        "image": st.sampled_from(IMAGES),
        "host": st.none() | st.sampled_from(HOSTS),
        "label": st.sampled_from(["a", "b"]),
        "secret": st.none() | st.sampled_from(["#cloud-config\n", "#cloud-config\npackages: [x]\n"]),
        "first": st.booleans(),
    }
)
FIELDS = ["vcpu", "memory", "state", "image", "host", "label", "secret"]
# A change of labels alone needs no other driver action: the VM's ownership is written again (docs/ownership.md),
# so the applied history may hold them like any other edit.
edit = st.tuples(st.integers(0, 3), st.sampled_from(FIELDS))
following_edit = st.tuples(st.integers(0, 3), st.sampled_from(FIELDS))


def manifests(vms: list[dict[str, Any]]) -> str:
    documents = [
        f"apiVersion: nebctl/v1\nkind: Host\nmetadata: {{name: {name}}}\nspec: {{uri: 'sim://{name}?cpus=64&memory=64Gi'}}\n"
        for name in HOSTS
    ]
    documents.append(
        "apiVersion: nebctl/v1\nkind: Datastore\nmetadata: {name: local}\nspec: {type: dir, path: /var/lib/d}\n"
    )
    for image in IMAGES:
        documents.append(
            f"apiVersion: nebctl/v1\nkind: Image\nmetadata: {{name: {image}}}\n"
            f"spec: {{source: /var/lib/images/{image}.qcow2, format: qcow2, datastore: local}}\n"
        )
    documents.append(
        "apiVersion: nebctl/v1\nkind: Network\nmetadata: {name: lan}\nspec: {mode: nat, cidr: 10.9.0.0/24}\n"
    )
    for index, vm in enumerate(vms):
        placement = f"{{host: {vm['host']}}}" if vm["host"] else "{policy: striping}"
        cloud = f"  cloudInit: {{userData: {json.dumps(vm['secret'])}}}\n" if vm["secret"] else ""
        documents.append(
            f"apiVersion: nebctl/v1\nkind: VirtualMachine\n"
            f"metadata: {{name: vm-{index}, labels: {{tier: {vm['label']}}}}}\n"
            f"spec:\n  vcpu: {vm['vcpu']}\n  memory: {vm['memory']}\n  state: {vm['state']}\n"
            f"  disks: [{{image: {vm['image']}, size: 4Gi}}]\n  nics: [{{network: lan}}]\n"
            f"  placement: {placement}\n{cloud}"
            f"  lifecycle: {{createBeforeDestroy: {str(vm['first']).lower()}}}\n"
        )
    return "---\n".join(documents)


def changed(vm: dict[str, Any], field: str) -> dict[str, Any]:
    vm = dict(vm)
    if field == "vcpu":
        vm["vcpu"] = vm["vcpu"] % 4 + 1
    elif field == "memory":
        vm["memory"] = "1Gi" if vm["memory"] != "1Gi" else "512Mi"
    elif field == "state":
        vm["state"] = {"running": "stopped", "stopped": "suspended", "suspended": "running"}[vm["state"]]
    elif field == "image":
        vm["image"] = IMAGES[1 - IMAGES.index(vm["image"])]
    elif field == "host":
        vm["host"] = HOSTS[(HOSTS.index(vm["host"]) + 1) % len(HOSTS)] if vm["host"] else HOSTS[0]
    elif field == "label":
        vm["label"] = "b" if vm["label"] == "a" else "a"
    else:
        vm["secret"] = None if vm["secret"] else "#cloud-config\n"
    return vm


class World:
    def __init__(self, root: Path) -> None:
        self.workspace = Workspace(root, manifests=root / "manifests", stack="prop")
        self.workspace.manifests.mkdir(exist_ok=True)

    def write(self, vms: list[dict[str, Any]]) -> dict[ResourceKey, Any]:
        (self.workspace.manifests / "all.yaml").write_text(manifests(vms), encoding="utf-8")
        return dict(load_paths([str(self.workspace.manifests)]).documents)

    def store(self) -> Store:
        ring = load_key_ring(default_key_file(self.workspace.state_dir))
        return Store.open(self.workspace.db_url, secrets=ring)

    def controller(self, store: Store) -> Controller:
        settings = self.workspace.settings
        installation = default_key_file(self.workspace.state_dir).with_name("installation.id")
        return Controller(
            store=store, registry=build_registry(settings), settings=settings, installation_file=installation
        )


def kept(store: Store) -> dict[ResourceKey, tuple[Any, ...]]:
    return {
        record.key: (record.stack, record.applied, record.status, record.host, record.live)
        for record in store.list_resources()
    }


def plan_document(controller: Controller, documents: dict[ResourceKey, Any]) -> dict[str, Any]:
    document = rendering.render_json(controller.plan(documents, PlanOptions(stack="prop")).plan)
    document.pop("fingerprint", None)  # a digest of the records' update times, which a rebuild renews
    return document


# Each example applies up to four times on a fleet of its own: shrinking a failure would take many minutes, so
# the failing example is reported as found.
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    vms=st.lists(vm_shape, min_size=1, max_size=4),
    history=st.lists(edit, max_size=3),
    following=following_edit,
)
def test_recover_gives_back_the_records_and_the_same_next_plan(
    tmp_path_factory: Any, vms: list[dict[str, Any]], history: list[tuple[int, str]], following: tuple[int, str]
) -> None:
    world = World(tmp_path_factory.mktemp("recover"))
    with world.store() as store:
        controller = world.controller(store)
        documents = world.write(vms)
        assert controller.apply(controller.plan(documents, PlanOptions(stack="prop"))).report.ok
        for index, field in history:
            vms[index % len(vms)] = changed(vms[index % len(vms)], field)
            documents = world.write(vms)
            planned = controller.plan(documents, PlanOptions(stack="prop"))
            acted = {action.key for action in planned.plan.actions}
            # Even a change no driver acts on (labels, a placement rule the VM already meets) writes the VM's
            # ownership again: the objects carry the spec applied last, which is what recovery gives back.
            assert all(change.key in acted for change in planned.plan.changes if change.is_change)
            result = controller.apply(planned)
            assert result.report.ok, [r.error for r in result.report.reports.values() if r.error]
        before = kept(store)
        index, field = following
        upcoming = list(vms)
        upcoming[index % len(vms)] = changed(vms[index % len(vms)], field)
        next_documents = world.write(upcoming)
        plan_before = plan_document(controller, next_documents)
        world.write(vms)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{world.workspace.db_path}{suffix}").unlink(missing_ok=True)
    with world.store() as store:
        controller = world.controller(store)
        recovery, _ = controller.recover(documents, stack="prop")
        assert not recovery.problems, recovery.problems
        after = kept(store)
        assert sorted(after, key=str) == sorted(before, key=str)
        for key, row in before.items():
            assert after[key] == row, key
        assert not controller.plan(documents, PlanOptions(stack="prop")).plan.has_changes
        assert plan_document(controller, next_documents) == plan_before
