"""``controller.kept_plans.KeptPlans`` on a real SQLite store and the sim fleet: a kept plan is found only with the
same inputs, database state, quotas and live state, and never by another version of nebctl; a plan that changed
something, or whose inputs moved while it was made, is not kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nebctl.controller import kept_plans
from nebctl.controller.kept_plans import KeptPlans
from nebctl.controller.observing import observation_token
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.plans import ChangeType, Plan, ResourceChange
from nebctl.core.settings import Settings
from nebctl.database import Store
from nebctl.database.records import QuotaRecord, ResourceRecord
from nebctl.drivers.registry import Registry, build_registry
from nebctl.drivers.sim.fleet import open_fleet
from nebctl.drivers.types import HostRef
from nebctl.schemas.caching import Entries

INPUTS = b"digest of the files, options, configuration and key file"
HOSTS: dict[str, tuple[HostRef, Any]] = {name: (HostRef(name, f"sim://{name}"), None) for name in ("h1", "h2")}
NOTHING = Plan(stack="s", changes=(), actions=(), edges=(), fingerprinted="f")


@pytest.fixture
def world(tmp_path: Path) -> Any:
    store = Store.open(f"sqlite:///{tmp_path / 'nebctl.db'}")
    registry = build_registry(Settings(state_dir=tmp_path), entry_points=False)
    store.save_resource(ResourceRecord(Kind.HOST, "default", "h1", stack="s", desired={"uri": "sim://h1"}))
    yield store, registry, tmp_path
    registry.close()
    store.close()


def keep(kept: KeptPlans, store: Store, registry: Registry, plan: Plan = NOTHING, **changes: Any) -> bool:
    versions = store.change_versions()
    arguments: dict[str, Any] = {
        "before": INPUTS,
        "after": INPUTS,
        "plan": plan,
        "documents": {},
        "hosts": HOSTS,
        "versions": versions,
        "token": observation_token(HOSTS, registry),
        "resealed": False,
        "store": store,
    }
    return kept.keep(**{**arguments, **changes})


def find(kept: KeptPlans, store: Store, registry: Registry, inputs: bytes = INPUTS) -> Plan | None:
    return kept.find(inputs, lambda: store, lambda: registry)


def test_found_again_only_while_every_input_is_as_it_was(world: Any) -> None:
    store, registry, root = world
    kept = KeptPlans(root / "plans", database="db", stack="s")
    assert keep(kept, store, registry)
    assert find(kept, store, registry) == NOTHING
    assert find(kept, store, registry, inputs=b"other files") is None
    assert find(KeptPlans(root / "plans", database="db", stack="other"), store, registry) is None

    store.set_quota(QuotaRecord("namespace", "default", vms=1))
    assert find(kept, store, registry) is None
    assert keep(kept, store, registry)
    assert find(kept, store, registry) == NOTHING

    fleet = open_fleet(Settings(state_dir=root))
    try:
        fleet.add_host("h2")  # the live state moves
    finally:
        fleet.close()
    assert find(kept, store, registry) is None
    assert keep(kept, store, registry)

    store.save_resource(ResourceRecord(Kind.HOST, "default", "h2", stack="s", desired={"uri": "sim://h2"}))
    assert find(kept, store, registry) is None


def test_another_version_never_finds_it(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store, registry, root = world
    assert keep(KeptPlans(root / "plans", database="db", stack="s"), store, registry)
    monkeypatch.setattr(kept_plans, "code_digest", lambda: b"another nebctl")
    assert find(KeptPlans(root / "plans", database="db", stack="s"), store, registry) is None


def test_what_is_not_kept(world: Any) -> None:
    store, registry, root = world
    kept = KeptPlans(root / "plans", database="db", stack="s")
    change = ResourceChange(ResourceKey(Kind.HOST, "default", "h1"), ChangeType.UPDATE)
    changing = Plan(stack="s", changes=(change,), actions=(), edges=(), fingerprinted="f")
    assert not keep(kept, store, registry, plan=changing)
    assert not keep(kept, store, registry, after=b"a file changed while the plan was made")
    assert not keep(kept, store, registry, versions=None)  # another writer came between the plan's reads
    assert not keep(kept, store, registry, token=None)  # a driver without a word, or the fleet moved meanwhile
    assert not keep(kept, store, registry, resealed=True)
    stale = store.change_versions()
    store.set_quota(QuotaRecord("group", "ops", vcpu=2))  # written after the plan, before it is kept
    assert not keep(kept, store, registry, versions=stale)
    assert find(kept, store, registry) is None


def test_other_inputs_are_told_without_reading_the_plan_back_and_a_stale_digest_finds_nothing_wrong(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, registry, root = world
    kept = KeptPlans(root / "plans", database="db", stack="s")
    assert keep(kept, store, registry)
    read: list[object] = []
    get = Entries.get

    def counted(self: Any, key: str) -> object:
        found = get(self, key)
        read.append(found)
        return found

    monkeypatch.setattr(Entries, "get", counted)
    assert find(KeptPlans(root / "plans", database="db", stack="s"), store, registry, inputs=b"edited") is None
    assert read == [INPUTS]  # the inputs' digest alone
    read.clear()
    assert find(KeptPlans(root / "plans", database="db", stack="s"), store, registry) == NOTHING
    assert len(read) == 2
    monkeypatch.undo()

    # A crash between the plan and its inputs' digest: the digest of the plan before with the plan after.
    digests = [path for path in (root / "plans").glob("*/*") if path.stat().st_size < 200]
    assert len(digests) == 1
    before = digests[0].read_bytes()
    assert keep(kept, store, registry, before=b"new", after=b"new")
    digests[0].write_bytes(before)
    assert find(KeptPlans(root / "plans", database="db", stack="s"), store, registry) is None  # INPUTS: plan's are new
    assert find(KeptPlans(root / "plans", database="db", stack="s"), store, registry, inputs=b"new") is None
