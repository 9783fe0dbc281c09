"""A sync that applied reads the stack's records back through the controller's records cache (``StackSyncer``):
the health it records is what the records say (every resource of a converged stack healthy), and the next plan,
an edit's, decodes only the rows written since instead of every row the apply moved."""

from __future__ import annotations

import threading
from pathlib import Path

from nebctl.controller.applying import Controller
from nebctl.controller.applying.records_cache import RecordsCache
from nebctl.controller.serving.eventing import EventSink
from nebctl.controller.serving.metrics import ServiceMetrics
from nebctl.controller.serving.sources import load_snapshot
from nebctl.controller.serving.syncing import StackSyncer
from nebctl.database.records import SyncStatus
from nebctl.drivers.registry import build_registry
from tests.support.drills import Workspace, fleet_manifests


def test_an_applying_sync_records_health_from_the_records_and_leaves_the_cache_warm(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    documents = fleet_manifests(vms=6, hosts=2).split("---\n")
    (manifests / "fleet.yaml").write_text("---\n".join(documents[:-1]), encoding="utf-8")
    (manifests / "edited.yaml").write_text(documents[-1], encoding="utf-8")
    workspace = Workspace(tmp_path / "ws", manifests=manifests, stack="s")
    with workspace.store() as store:
        settings = workspace.settings
        cache = RecordsCache()
        controller = Controller(store=store, registry=build_registry(settings), settings=settings, records_cache=cache)
        syncer = StackSyncer(
            stack="s", controller=controller, serve=settings.serve, events=EventSink(store), metrics=ServiceMetrics()
        )
        stop = threading.Event()

        def sync() -> str:
            snapshot = load_snapshot(manifests, None)
            return syncer.sync(snapshot, stop=stop, reason="test").result

        assert sync() == "applied"
        names = sorted(r.name for r in store.list_resources(stack="s"))
        assert len(names) == len(documents)  # one record per document
        health = {(h.name, h.health) for h in store.list_resource_health("s")}
        assert health == {(name, "healthy") for name in names}
        status = store.stack_status("s")
        assert status is not None and status.sync_status == SyncStatus.SYNCED.value
        # The cache was read after the apply: nothing is left for the next plan (an edit's) to decode again.
        assert cache.records(store) == store.list_resources() and cache.read_rows == 0
        edited = manifests / "edited.yaml"
        edited.write_text(edited.read_text(encoding="utf-8").replace("memory: 512Mi", "memory: 600Mi"))
        assert sync() == "applied"
        assert cache.read_rows == 1  # after that apply, its one row
        assert {(h.name, h.health) for h in store.list_resource_health("s")} == {(name, "healthy") for name in names}
