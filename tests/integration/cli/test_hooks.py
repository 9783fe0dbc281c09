"""Hook resources run on the events of an apply: a real program, the event as JSON on stdin, its environment
given, its exit status and output recorded; a failing or slow hook does not fail the apply."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from nebctl.database.store import Store

REPO = Path(__file__).resolve().parents[3]


def test_hooks_run_on_events_and_are_recorded(tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    shutil.copytree(REPO / "manifests" / "examples", manifests)
    inbox = tmp_path / "inbox"  # one file per run: hooks run concurrently
    inbox.mkdir()
    (manifests / "40-hooks.yaml").write_text(
        "apiVersion: nebctl/v1\nkind: Hook\nmetadata: {name: record}\nspec:\n"
        "  on: [vm.running, apply.finished]\n"
        f"  command: [/bin/sh, -c, 'cat > \"$(mktemp -p {inbox} event.XXXXXX)\"; echo channel=$CHANNEL']\n"
        "  env: {CHANNEL: ops}\n"
        "---\napiVersion: nebctl/v1\nkind: Hook\nmetadata: {name: broken}\nspec:\n"
        "  on: [apply.finished]\n  command: [/bin/sh, -c, 'exit 3']\n"
    )
    (tmp_path / "config.yaml").write_text(f"state_dir: {tmp_path}\n")
    db = f"sqlite:///{tmp_path / 'db'}"
    result = subprocess.run(
        [sys.executable, "-m", "nebctl", "--db", db, "--config", str(tmp_path / "config.yaml"),
         "apply", "-f", str(manifests), "--yes"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(path.read_text()) for path in sorted(inbox.iterdir())]
    running = sorted(event["name"] for event in events if event["type"] == "vm.running")
    # batch-1 is declared stopped: it gets no vm.running event.
    assert running == ["cache-1", "db-1", "lb-1", "web-1", "web-2", "web-3"]
    assert [event["type"] for event in events].count("apply.finished") == 1
    store = Store.open(db)
    try:
        runs = store.list_hook_runs(limit=100)
    finally:
        store.close()
    recorded = [run for run in runs if run.hook == "record"]
    assert len(recorded) == 7 and all(run.exit_code == 0 for run in recorded)
    assert all(run.stdout.strip() == "channel=ops" for run in recorded)
    broken = [run for run in runs if run.hook == "broken"]
    assert [run.exit_code for run in broken] == [3]
