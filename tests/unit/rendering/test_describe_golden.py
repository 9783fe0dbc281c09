"""Golden files of ``describe``, one or more per kind: records made by a real apply of the example manifests
(and a marketplace) on the simulated fleet, with the store's clock fixed, and observations written out by hand.

They show what a reader must see: block YAML indented line by line, quantities as manifests write them (2Gi,
20Gi), secrets masked (a VM's cloud-init, a hook's environment), times in local time and UTC, and the observed
state beside the record: drift (stopped, deleted), agreement, nothing observed yet, an observation older than
the record, a host that does not answer.

After an intended change, regenerate and review the diff:

    NEBCTL_UPDATE_GOLDEN=1 pytest tests/unit/rendering/test_describe_golden.py
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from nebctl.controller.applying import Controller, PlanOptions
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.settings import Settings
from nebctl.database import ObservationRecord, Store
from nebctl.drivers.registry import build_registry
from nebctl.rendering.resources import describe, observation_for
from nebctl.schemas.loading import load_paths
from tests.unit.rendering.conftest import updating

REPO = Path(__file__).resolve().parents[3]
GOLDEN = REPO / "tests" / "golden" / "describe"
SECRET = "s3cr3t-never-described"

APPLIED_AT = datetime(2026, 12, 3, 4, 27, 4, tzinfo=UTC)
NOW = APPLIED_AT + timedelta(minutes=3)
CET = timezone(timedelta(hours=1), "CET")

MARKETPLACE = """
apiVersion: nebctl/v1
kind: Marketplace
metadata: {name: community}
spec: {path: /srv/catalogue/index.yaml}
"""

GI = 1024**3


def _observed(kind: Kind, name: str, seen_by: str, state: str, minutes: float, **details: object) -> ObservationRecord:
    moment = APPLIED_AT + timedelta(minutes=minutes)
    return ObservationRecord(kind, "default", name, seen_by, state, dict(details), moment)


# As the store keeps them: a row per host, and a row per VM only where it differs from its record.
OBSERVATIONS = [
    _observed(Kind.HOST, "kvm-a1", "kvm-a1", "online", 1, cpus=16, memory=64 * GI, free_memory=50 * GI, load=0.5),
    _observed(Kind.HOST, "kvm-a2", "kvm-a2", "online", 1, cpus=16, memory=64 * GI, free_memory=60 * GI, load=0.1),
    _observed(Kind.HOST, "kvm-b2", "kvm-b2", "error", 1, error="host does not answer: down"),
    _observed(Kind.VIRTUAL_MACHINE, "web-1", "kvm-a2", "stopped", 1, host="kvm-a2", vcpu=2, memory=2 * GI,
              drift=["was stopped"]),
    _observed(Kind.VIRTUAL_MACHINE, "web-2", "kvm-b1", "absent", 1, host="kvm-b1",
              drift=["was deleted outside nebctl"]),
    # Made a minute before the apply wrote the record: shown, but no drift read from it.
    _observed(Kind.VIRTUAL_MACHINE, "cache-1", "kvm-b1", "stopped", -1, host="kvm-b1", vcpu=2, memory=4 * GI,
              drift=["was stopped"]),
    # vm/db-1 (on kvm-a1) has no row: kvm-a1's probe saw it as recorded. kvm-b1 has no row at all: vm/web-3 on
    # it was never observed.
]  # fmt: skip

# (golden file, resource): every kind.
CASES = [
    ("host-kvm-a1", "host/kvm-a1"),
    ("host-kvm-b2-not-answering", "host/kvm-b2"),
    ("datastore-local", "datastore/local"),
    ("marketplace-community", "marketplace/community"),
    ("image-debian-12", "image/debian-12"),
    ("network-lan", "network/lan"),
    ("securitygroup-web", "securitygroup/web"),
    ("vm-web-1-stopped-behind-nebctls-back", "vm/web-1"),
    ("vm-web-2-deleted-behind-nebctls-back", "vm/web-2"),
    ("vm-db-1-as-recorded", "vm/db-1"),
    ("vm-cache-1-observed-before-the-last-change", "vm/cache-1"),
    ("vm-web-3-never-observed", "vm/web-3"),
    ("hook-notify-ops", "hook/notify-ops"),
]


@dataclass
class Applied:
    store: Store


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    root = tmp_path_factory.mktemp("describe")
    manifests = root / "examples"
    shutil.copytree(REPO / "manifests" / "examples", manifests)
    (manifests / "50-marketplace.yaml").write_text(MARKETPLACE, encoding="utf-8")
    vms = manifests / "30-vms.yaml"
    vms.write_text(vms.read_text().replace("packages: [nginx]", f"packages: [nginx]\n      # {SECRET}"))
    hooks = manifests / "40-hooks.yaml"
    hooks.write_text(hooks.read_text().replace("NOTIFY_CHANNEL: ops", f"NOTIFY_CHANNEL: ops\n    TOKEN: {SECRET}"))
    settings = Settings(state_dir=root, parallelism=1)  # one action at a time: the events come in one order
    store = Store.open(f"sqlite:///{root / 'nebctl.db'}", clock=lambda: APPLIED_AT)
    registry = build_registry(settings)
    try:
        controller = Controller(store=store, registry=registry, settings=settings)
        documents = dict(load_paths([str(manifests)]).documents)
        result = controller.apply(controller.plan(documents, PlanOptions(stack="examples")), parallelism=1)
        assert result.report.ok
        # What the plan observed (it ran before anything existed) is replaced by the observations of the cases.
        store.record_observations(OBSERVATIONS, probed=["kvm-a1", "kvm-a2", "kvm-b1", "kvm-b2"])
        yield Applied(store)
    finally:
        registry.close()
        store.close()


def _describe(store: Store, reference: str) -> str:
    key = ResourceKey.parse(reference)
    record = store.get_resource(key)
    assert record is not None, reference
    actions = [
        action
        for apply in store.list_applies(stack=record.stack)
        for action in store.actions_of(apply.id)
        if (action.kind, action.namespace, action.name) == tuple(key)
    ]
    events = store.list_events(key=key, limit=20, newest=True)
    return describe(record, observation_for(record, store.list_observations()), actions=actions, events=events,
                    now=NOW, tz=CET)  # fmt: skip


@pytest.mark.parametrize(("name", "reference"), CASES, ids=[name for name, _ in CASES])
def test_describe_matches_golden_file(
    applied: Applied, name: str, reference: str, request: pytest.FixtureRequest
) -> None:
    produced = _describe(applied.store, reference)
    assert SECRET not in produced
    path = GOLDEN / f"{name}.txt"
    if updating(request.config):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(produced, encoding="utf-8", newline="\n")
        return
    assert path.exists(), f"{path} is missing; create it with NEBCTL_UPDATE_GOLDEN=1"
    assert produced == path.read_text(encoding="utf-8"), f"{name} changed; regenerate and review the diff"


def test_the_golden_files_say_what_a_reader_needs(applied: Applied) -> None:
    """What the golden files must show, stated apart from them (a regenerated file cannot lose it unseen)."""
    web1 = _describe(applied.store, "vm/web-1")
    assert "Status:      running → stopped (drift, 2m ago)\n" in web1
    assert "Observed:    stopped on kvm-a2, 2 vCPU, 2Gi memory\n" in web1
    assert "Observed at: 2026-12-03 05:28:04 CET (04:28:04 UTC), 2m ago\n" in web1
    assert "Drift:       was stopped\n" in web1
    assert "Created:     2026-12-03 05:27:04 CET (04:27:04 UTC)\n" in web1
    assert "\n  memory: 2Gi\n" in web1 and "\n    size: 20Gi\n" in web1
    assert "\n  cloudInit: (sensitive)\n" in web1
    assert "requirements: free_memory >= 4Gi and labels.zone == 'a'\n" in web1
    # Every line of the YAML is indented once, with no stray spaces inside.
    spec = web1.split("Spec (last applied):\n")[1].split("Live:\n")[0]
    assert all(line.startswith("  ") and "  :" not in line and ":   " not in line for line in spec.splitlines())
    assert "Status:      running → absent (drift, 2m ago)" in _describe(applied.store, "vm/web-2")
    assert "Status:      running\n" in _describe(applied.store, "vm/db-1")
    assert "Observed:    nothing yet" in _describe(applied.store, "vm/web-3")
    db1 = _describe(applied.store, "vm/db-1")
    assert "Observed:    running on kvm-a1, 4 vCPU, 8Gi memory\n" in db1 and ", 2m ago\n" in db1
    stale = _describe(applied.store, "vm/cache-1")
    assert "Status:      running\n" in stale and "may no longer hold" in stale and "Drift:" not in stale
    host = _describe(applied.store, "host/kvm-a1")
    assert "Observed:    online, 16 CPUs, 64Gi memory, load 0.50\n" in host and "\n    memory: 2Gi\n" in host
    assert "Status:      ready → error (host not answering, 2m ago)" in _describe(applied.store, "host/kvm-b2")
    hook = _describe(applied.store, "hook/notify-ops")
    assert "\n  env: (sensitive)\n" in hook and "\n  timeout: 10s\n" in hook
    assert "not probed one by one" in _describe(applied.store, "network/lan")
