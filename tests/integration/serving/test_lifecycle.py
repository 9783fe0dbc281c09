"""Stopping and killing a real ``nebctl serve`` in the middle of an apply, and a CLI ``apply`` beside it: SIGTERM
finishes the running actions, releases the lock and exits 0; SIGKILL loses nothing; either way the next start
converges with no duplicate; a CLI apply waits for the service's turn and goes through."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from tests.integration.serving.conftest import cleanup, make_workspace, vm_states
from tests.support.drills import Workspace, audit
from tests.support.serving import Served, start_serve, vm_manifest, wait_for, write_manifests

__all__ = ["cleanup"]  # fixtures

VMS = 12


def _slow_workspace(root: Path) -> Workspace:
    workspace = make_workspace(root)
    write_manifests(workspace.manifests, [vm_manifest(f"vm-{i:02d}") for i in range(VMS)])
    workspace.set_latency(0.15, 0.25)  # every sim action: ~50 actions two at a time take several seconds
    return workspace


def _serve(workspace: Workspace, cleanup: list[Served]) -> Served:
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", workspace.stack, "--parallelism", "2")
    cleanup.append(served)
    return served


def _when_halfway(workspace: Workspace, served: Served) -> int:
    def halfway() -> int | None:
        served.check_alive()
        done, total = workspace.journal_progress()
        return done if total and 4 <= done < total - 8 else None

    return wait_for(halfway, timeout=60, what="the service's apply to be under way")


def _converge_again(workspace: Workspace, cleanup: list[Served]) -> None:
    workspace.set_latency(0, 0)
    served = _serve(workspace, cleanup)
    wait_for(
        lambda: served.status().get("sync_status") == "synced", timeout=60, what="the restarted service to converge"
    )
    assert served.terminate() == 0
    assert audit(workspace) == []
    assert set(vm_states(workspace)) == {f"vm-{i:02d}" for i in range(VMS)}


def test_sigterm_during_an_apply_finishes_running_actions_and_exits_0(tmp_path: Path, cleanup: list[Served]) -> None:
    workspace = _slow_workspace(tmp_path / "ws")
    served = _serve(workspace, cleanup)
    _when_halfway(workspace, served)
    started = time.monotonic()
    assert served.terminate(timeout=30) == 0
    assert time.monotonic() - started < 10  # running actions finish (~0.25 s each); none new start
    with workspace.store() as store:
        apply = store.list_applies(stack=workspace.stack)[0]
        actions = store.actions_of(apply.id)
        assert store.lock_status() is None  # released
    assert apply.state == "interrupted" and apply.finished_at is not None
    states = {a.state for a in actions}
    assert "running" not in states and "pending" not in states, states  # no loose end in the journal
    assert {"succeeded", "cancelled"} <= states
    assert "SIGTERM" in served.output()
    _converge_again(workspace, cleanup)


def test_sigkill_during_an_apply_loses_nothing(tmp_path: Path, cleanup: list[Served]) -> None:
    workspace = _slow_workspace(tmp_path / "ws")
    served = _serve(workspace, cleanup)
    _when_halfway(workspace, served)
    served.kill()
    with workspace.store() as store:
        apply = store.list_applies(stack=workspace.stack)[0]
        lock = store.lock_status()
    assert apply.finished_at is None  # the journal says the process died mid-apply
    assert lock is not None  # left behind; its holder's pid no longer runs, so the next writer takes it over
    _converge_again(workspace, cleanup)
    with workspace.store() as store:
        closed = store.get_apply(apply.id)
    assert closed is not None and closed.state == "interrupted"  # closed by the restart, which resumed it


def test_a_cli_apply_waits_for_the_service_and_goes_through(tmp_path: Path, cleanup: list[Served]) -> None:
    workspace = _slow_workspace(tmp_path / "ws")
    served = _serve(workspace, cleanup)
    _when_halfway(workspace, served)
    with workspace.store() as store:
        lock = store.lock_status()
    assert lock is not None and "nebctl serve" in lock.holder
    # One more VM, applied by hand while the service is busy: the CLI waits for the lock, then creates it.
    write_manifests(workspace.manifests, [vm_manifest(f"vm-{i:02d}") for i in range(VMS + 1)])
    result = workspace.apply("--lock-timeout", "120s", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    with workspace.store() as store:
        applies = store.list_applies(stack=workspace.stack)[::-1]
    service, cli = applies[0], applies[-1]
    assert service.holder.endswith(f":{served.process.pid}") and not cli.holder.endswith(f":{served.process.pid}")
    assert service.finished_at is not None and cli.started_at >= service.finished_at  # it waited its turn
    assert f"vm-{VMS:02d}" in vm_states(workspace)
    # The service saw the edit too; its own sync of it must be recorded after the CLI's apply, not before.
    cli_finished = cli.finished_at
    assert cli_finished is not None

    def synced_after_the_cli() -> bool:
        status = served.status()
        at = status.get("last_sync_at")
        return status.get("sync_status") == "synced" and at is not None and datetime.fromisoformat(at) > cli_finished

    wait_for(synced_after_the_cli, timeout=60, what="the service's sync after the CLI's apply")
    assert served.terminate() == 0
    assert audit(workspace) == []
    with workspace.store() as store:
        assert len(store.list_applies(stack=workspace.stack)) == len(applies)  # nothing left to do: no empty apply
