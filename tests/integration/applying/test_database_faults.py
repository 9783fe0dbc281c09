"""The state database failing in the middle of an apply: SQLite on a file system that fills up, PostgreSQL and
MariaDB behind a link that stops answering, and servers that accept a connection and never say a word.

Each fault must end nebctl with one clear line on stderr (no traceback, none from releasing the lock either)
and exit 1, within the configured timeouts; then, the database being healthy again, the next apply resumes and
converges (the drill's audit finds nothing wrong). The faults are real: a tmpfs filled to the last byte, a TCP
proxy that stops passing bytes.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nebctl.database.store import Store
from tests.support.databases import DatabaseServer
from tests.support.drills import Workspace, audit, loose_actions
from tests.support.stalling import StallingProxy

FAILED = "error: the state database failed during the apply: "
TAIL = "; the journal keeps what was done; run apply again when it is writable"
TIMEOUTS = {"connect_timeout": 3, "read_timeout": 3, "write_timeout": 3}


@dataclass
class UrlWorkspace(Workspace):
    """A drill workspace whose database is at ``url`` (the sim fleet and the configuration stay in ``root``)."""

    url: str = ""

    @property
    def db_url(self) -> str:
        return self.url


def finished_actions(url: str, stack: str) -> int:
    """Actions of the newest apply of ``stack`` journalled as done, read through a connection of our own."""
    with Store.open(url) as store:
        applies = store.list_applies(stack=stack, limit=1)
        if not applies:
            return 0
        return sum(action.state == "succeeded" for action in store.actions_of(applies[0].id))


def wait_until_done(process: subprocess.Popen[str], url: str, stack: str, count: int, *, limit: float = 60) -> None:
    """Wait until the apply run by ``process`` has journalled ``count`` successful actions."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the apply ended first: {process.communicate()}")
        if finished_actions(url, stack) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} actions not done in {limit}s")


def check_one_clear_line(process: subprocess.Popen[str], *, limit: float) -> str:
    try:
        _, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"nebctl still ran {limit}s after the database stopped answering") from None
    lines = err.strip().splitlines()
    assert process.returncode == 1, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def check_resumes(workspace: Workspace) -> None:
    result = workspace.apply()
    assert result.returncode == 0, result.stderr
    assert "Resuming interrupted apply #1" in result.stdout
    assert audit(workspace) == []
    with workspace.store() as store:
        assert loose_actions(store, workspace.stack) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (we run as root): a file system that can really be filled, with room for the database of
    an apply's first actions (its WAL and the observations grow it to a few MiB)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def test_sqlite_on_a_full_file_system_mid_apply_gives_one_line_and_the_next_apply_resumes(
    tmp_path: Path, small_tmpfs: Path
) -> None:
    workspace = UrlWorkspace(tmp_path / "ws", stack="examples", url=f"sqlite:///{small_tmpfs / 'nebctl.db'}")
    workspace.set_latency(0.05, 0.1)
    process = workspace.start_apply("--parallelism", "2")
    wait_until_done(process, workspace.db_url, "examples", 5)
    filler = small_tmpfs / "filler"
    # Opening the filler may itself meet the full file system, if the apply's writes filled it first.
    with pytest.raises(OSError, match="No space left on device"), open(filler, "wb") as stream:
        while True:
            stream.write(b"\0" * 65536)
            stream.flush()
    line = check_one_clear_line(process, limit=60)
    assert line.startswith(FAILED + f"database write failed ({workspace.db_url}): "), line
    assert line.endswith("database or disk is full" + TAIL), line
    filler.unlink(missing_ok=True)
    check_resumes(workspace)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_server_that_stops_answering_mid_apply_gives_one_line_and_the_next_apply_resumes(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server: DatabaseServer = request.getfixturevalue(f"{backend}_server")
    url = server.create_database(f"nebctl_fault_{uuid.uuid4().hex[:8]}")
    Store.open(url).close()  # the schema first: two processes creating it at once race on MariaDB
    with StallingProxy(("127.0.0.1", server.port)) as proxy:
        through_proxy = url.replace(f":{server.port}/", f":{proxy.port}/")
        workspace = UrlWorkspace(
            tmp_path / "ws", stack="examples", url=through_proxy, settings_overrides={"database": TIMEOUTS}
        )
        workspace.set_latency(0.05, 0.1)
        process = workspace.start_apply("--parallelism", "2")
        wait_until_done(process, url, "examples", 5)
        proxy.stall()
        # The read timeout (3 s) ends the apply; releasing the lock meets the stall too (connect timeout, 3 s).
        line = check_one_clear_line(process, limit=30)
    assert line.startswith(FAILED), line
    assert line.endswith(TAIL), line
    assert "timed out" in line or "did not answer within 3s" in line, line
    check_resumes(UrlWorkspace(tmp_path / "ws", stack="examples", url=url, settings_overrides={"database": TIMEOUTS}))


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_a_server_that_never_answers_gives_one_line_within_the_connect_timeout(scheme: str, tmp_path: Path) -> None:
    with StallingProxy() as silent:
        workspace = UrlWorkspace(
            tmp_path / "ws",
            stack="examples",
            url=f"{scheme}://nebctl@127.0.0.1:{silent.port}/nebctl",
            settings_overrides={"database": TIMEOUTS},
        )
        process = workspace.start_apply()
        line = check_one_clear_line(process, limit=30)
    assert line.startswith(f"error: cannot open the database ({scheme}://nebctl@127.0.0.1:{silent.port}/nebctl): ")
    assert "timeout" in line or "timed out" in line, line
    if scheme.startswith("postgresql"):
        assert "the server did not answer within 3s (connect timeout)" in line, line


def test_the_timeouts_are_read_from_the_configuration() -> None:
    from nebctl.core.settings import parse_settings

    settings = parse_settings({"database": {"connect_timeout": "5s", "read_timeout": "2m", "busy_timeout": 1}})
    assert (settings.database.connect_timeout, settings.database.read_timeout) == (5.0, 120.0)
    assert (settings.database.write_timeout, settings.database.busy_timeout) == (60.0, 1.0)
