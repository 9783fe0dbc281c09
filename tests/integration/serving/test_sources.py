"""A real ``nebctl serve`` follows its source: a directory edit is applied, an invalid edit is refused with
every FILE:LINE:COL problem and nothing changes, and a git repository's commits are fetched and applied with
the commit recorded."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.serving.conftest import cleanup, make_workspace, vm_memory, vm_states, workspace
from tests.support.drills import Workspace
from tests.support.serving import Served, start_serve, vm_manifest, wait_for

__all__ = ["cleanup", "workspace"]  # fixtures


def _synced(served: Served) -> None:
    served.wait_event("sync.finished")
    wait_for(lambda: served.status().get("sync_status") == "synced", what="the stack to be synced")


def test_a_manifest_edit_is_applied(workspace: Workspace, cleanup: list[Served]) -> None:
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", workspace.stack)
    cleanup.append(served)
    _synced(served)
    assert vm_states(workspace) == {"web-1": "running", "web-2": "running"}
    assert vm_memory(workspace)["web-1"] == 512 * 2**20

    vms = workspace.manifests / "10-vms.yaml"
    vms.write_text(
        "---\n".join([vm_manifest("web-1", host="h1", memory="1Gi"), vm_manifest("web-2", host="h2")]),
        encoding="utf-8",
    )
    wait_for(lambda: vm_memory(workspace)["web-1"] == 2**30, what="web-1 to get 1Gi")
    assert vm_memory(workspace)["web-2"] == 512 * 2**20
    # The first sync created everything, so its plan, and the one the service made after it, were made whole; the
    # edit's plan was made from the last one's trace (web-1 planned again, every VM placed again where it was).
    assert _plans(served) == {"whole": 2, "incremental": 1}
    assert served.terminate() == 0
    assert workspace.diff().returncode == 0  # nothing left to do


def _plans(served: Served) -> dict[str, float]:
    """``nebctl_plans_total`` of the stack, by how each plan was made."""
    status, text = served.get("/metrics")
    assert status == 200
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "nebctl_plans"]
    return {s.labels["how"]: s.value for s in family.samples if s.name == "nebctl_plans_total"}


def test_editor_scratch_files_do_not_trigger_a_sync(workspace: Workspace, cleanup: list[Served]) -> None:
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", workspace.stack)
    cleanup.append(served)
    _synced(served)

    def change_syncs() -> int:
        return served.output().count(f"sync of stack {workspace.stack} (change)")

    for name in (".10-vms.yaml.swp", "10-vms.yaml~", "#10-vms.yaml#", "4913", "10-vms.yaml.tmp"):
        (workspace.manifests / name).write_text("not: [valid", encoding="utf-8")
    time.sleep(1.5)  # several debounce periods
    assert change_syncs() == 0
    # The control: a real manifest's change is noticed (debounced into one sync).
    vms = workspace.manifests / "10-vms.yaml"
    vms.write_text(vms.read_text(encoding="utf-8") + "\n# a comment\n", encoding="utf-8")
    wait_for(lambda: change_syncs() == 1, what="one sync after the change")


def test_an_invalid_edit_is_refused_and_nothing_changes(workspace: Workspace, cleanup: list[Served]) -> None:
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", workspace.stack)
    cleanup.append(served)
    _synced(served)
    applies = len(served.events("sync.started"))
    bad = workspace.manifests / "20-bad.yaml"
    # Two problems: an unknown field (line 5) and a memory that is no quantity (line 7).
    bad.write_text(
        "apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {name: web-3}\nspec:\n  colour: blue\n"
        "  vcpu: 1\n  memory: lots\n  disks: [{image: base, size: 4Gi}]\n",
        encoding="utf-8",
    )
    # And a valid-looking change beside it, which must not be applied either.
    (workspace.manifests / "10-vms.yaml").write_text(
        "---\n".join([vm_manifest("web-1", host="h1", memory="2Gi"), vm_manifest("web-2", host="h2")]),
        encoding="utf-8",
    )
    invalid = served.wait_event("source.invalid")[-1]
    problems = invalid.data["problems"]
    assert any(p.startswith(f"{bad}:5:") for p in problems), problems
    assert any(p.startswith(f"{bad}:7:") for p in problems), problems
    status = served.status()
    assert status["sync_status"] == "unknown"
    assert status["problems"] == problems
    time.sleep(1.0)
    assert len(served.events("sync.started")) == applies
    assert set(vm_states(workspace)) == {"web-1", "web-2"}
    assert vm_memory(workspace)["web-1"] == 512 * 2**20

    bad.unlink()  # valid again: the pending change goes through
    wait_for(lambda: vm_memory(workspace)["web-1"] == 2 * 2**30, what="web-1 to get 2Gi")
    assert served.terminate() == 0


def _git(repository: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Ada Author", "-c", "user.email=ada@example.org", *args],
        cwd=repository,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_git_source_is_fetched_and_each_commit_recorded(tmp_path: Path, cleanup: list[Served]) -> None:
    workspace = make_workspace(tmp_path / "ws", stack="gitops")
    repository = tmp_path / "repo"
    repository.mkdir()
    _git(repository, "init", "-q", "-b", "trunk")
    (repository / "infra").mkdir()
    for path in workspace.manifests.iterdir():
        (repository / "infra" / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (repository / "README").write_text("not a manifest directory\n", encoding="utf-8")
    _git(repository, "add", ".")
    _git(repository, "commit", "-q", "-m", "Two web servers")
    first = _git(repository, "rev-parse", "HEAD")

    served = start_serve(
        workspace, "--git", f"file://{repository}", "--branch", "trunk", "--path", "infra", "--stack", "gitops"
    )
    cleanup.append(served)
    _synced(served)
    assert vm_states(workspace) == {"web-1": "running", "web-2": "running"}
    with workspace.store() as store:
        applies = store.list_applies(stack="gitops")
        revision = store.apply_revision(applies[0].id)
    assert applies[0].revision == first[:12]
    assert revision is not None
    assert (revision.sha, revision.author, revision.subject) == (
        first,
        "Ada Author <ada@example.org>",
        "Two web servers",
    )
    assert served.status()["revision"] == first[:12]

    # An uncommitted change in the origin's working tree is not part of any commit: never applied.
    vms = repository / "infra" / "10-vms.yaml"
    vms.write_text(vms.read_text(encoding="utf-8") + "---\n" + vm_manifest("web-9", host="h1"), encoding="utf-8")
    result = workspace.run("sync", "gitops", "--wait", "30s")
    assert result.returncode == 0, result.stderr
    assert set(vm_states(workspace)) == {"web-1", "web-2"}

    _git(repository, "commit", "-q", "-am", "A third web server")
    second = _git(repository, "rev-parse", "HEAD")
    result = workspace.run("sync", "gitops", "--wait", "30s")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "web-9" in vm_states(workspace), what="web-9 to be created")
    with workspace.store() as store:
        newest = store.list_applies(stack="gitops")[0]
        revision = store.apply_revision(newest.id)
    assert revision is not None and (revision.sha, revision.subject) == (second, "A third web server")
    assert newest.revision == second[:12]
    assert served.terminate() == 0


def test_cli_apply_of_a_checkout_records_head_and_dirtiness(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    repository = workspace.manifests
    _git(repository, "init", "-q")
    _git(repository, "add", ".")
    _git(repository, "commit", "-q", "-m", "Initial fleet")
    head = _git(repository, "rev-parse", "HEAD")
    assert workspace.apply().returncode == 0
    (repository / "10-vms.yaml").write_text(vm_manifest("web-1", host="h1", memory="1Gi"), encoding="utf-8")
    assert workspace.apply("--prune").returncode == 0
    with workspace.store() as store:
        second, first = store.list_applies(stack=workspace.stack)[:2]
        clean, dirty = store.apply_revision(first.id), store.apply_revision(second.id)
    assert clean is not None and (clean.sha, clean.dirty, clean.subject) == (head, False, "Initial fleet")
    assert dirty is not None and (dirty.sha, dirty.dirty) == (head, True)
    assert (first.revision, second.revision) == (head[:12], head[:12] + "-dirty")
