"""Fixtures of the dashboard's browser tests: a real ``nebctl serve`` of the small sim fleet (from a directory or
a git repository) with an admin and a viewer in its database, and a headless chromium signed in or not."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.serving.conftest import make_workspace
from tests.support.browser import Browser, User, add_user, browser, require_browser
from tests.support.drills import Workspace
from tests.support.serving import Served, start_serve, wait_for


@dataclass
class Dashboard:
    workspace: Workspace
    served: Served
    admin: User
    viewer: User

    @property
    def base(self) -> str:
        return self.served.url("")

    def synced(self) -> None:
        wait_for(lambda: self.served.status().get("sync_status") == "synced", what="the stack to be synced")


def git(repository: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Ada Author", "-c", "user.email=ada@example.org", *args],
        cwd=repository,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _users(workspace: Workspace) -> tuple[User, User]:
    workspace.run("status")  # creates the database
    return add_user(workspace, "ada", "correct horse", ["get", "diff", "apply", "delete", "admin"]), add_user(
        workspace, "vic", "viewer pass", ["get"]
    )


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    require_browser()
    workspace = make_workspace(tmp_path / "ws")
    admin, viewer = _users(workspace)
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", workspace.stack)
    try:
        board = Dashboard(workspace, served, admin, viewer)
        board.synced()
        yield board
    finally:
        served.kill()


@pytest.fixture
def git_dashboard(tmp_path: Path) -> Iterator[tuple[Dashboard, Path]]:
    """The same fleet served from a git repository (fetched on "Sync now"): the dashboard and the repository."""
    require_browser()
    workspace = make_workspace(tmp_path / "ws")
    admin, viewer = _users(workspace)
    repository = tmp_path / "repo"
    repository.mkdir()
    git(repository, "init", "-q", "-b", "trunk")
    for path in workspace.manifests.iterdir():
        (repository / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    git(repository, "add", ".")
    git(repository, "commit", "-q", "-m", "Two web servers")
    served = start_serve(workspace, "--git", f"file://{repository}", "--branch", "trunk", "--stack", workspace.stack)
    try:
        board = Dashboard(workspace, served, admin, viewer)
        board.synced()
        yield board, repository
    finally:
        served.kill()


@pytest.fixture
def window(dashboard: Dashboard) -> Iterator[Browser]:
    with browser(dashboard.base) as opened:
        yield opened
