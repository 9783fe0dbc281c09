"""The database test harness clears what an earlier, killed test session left running, and nothing else."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.support.databases import OWNER_FILE, stop_orphaned_servers


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_servers_of_a_dead_session_are_stopped_and_live_sessions_keep_theirs() -> None:
    backend = f"harness-{uuid.uuid4().hex[:8]}"  # its own prefix: real servers of other sessions are not seen
    orphan = subprocess.Popen(["sleep", "600"])
    kept_server = subprocess.Popen(["sleep", "600"])
    try:
        orphan_dir = Path(tempfile.mkdtemp(prefix=f"nebctl-{backend}-"))
        (orphan_dir / OWNER_FILE).write_text(f"{_dead_pid()} {orphan.pid}")
        kept_dir = Path(tempfile.mkdtemp(prefix=f"nebctl-{backend}-"))
        (kept_dir / OWNER_FILE).write_text(f"{os.getpid()} {kept_server.pid}")
        starting_dir = Path(tempfile.mkdtemp(prefix=f"nebctl-{backend}-"))  # no owner file yet

        assert stop_orphaned_servers(backend) == [orphan_dir]

        assert orphan.wait(timeout=30) is not None
        assert not orphan_dir.exists()
        assert kept_server.poll() is None and kept_dir.exists() and starting_dir.exists()
    finally:
        for process in (orphan, kept_server):
            process.kill()
            process.wait()
        for directory in Path(tempfile.gettempdir()).glob(f"nebctl-{backend}-*"):
            for child in directory.iterdir():
                child.unlink()
            directory.rmdir()
