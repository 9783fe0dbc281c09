"""Fixtures of the service's integration tests: a workspace with the small sim fleet of ``tests.support.serving``
and fast intervals, and a running ``nebctl serve`` that is stopped (or killed) when the test ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.drills import Workspace
from tests.support.serving import FAST, Served, vm_manifest, write_manifests


def make_workspace(root: Path, *, stack: str = "site", **serve: Any) -> Workspace:
    overrides = {**FAST, "serve": {**FAST["serve"], **serve}}
    workspace = Workspace(root, manifests=root / "manifests", stack=stack, settings_overrides=overrides)
    write_manifests(workspace.manifests, [vm_manifest("web-1", host="h1"), vm_manifest("web-2", host="h2")])
    return workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path / "ws")


@pytest.fixture
def cleanup() -> Iterator[list[Served]]:
    """Services a test started; any still running at the end is killed."""
    started: list[Served] = []
    yield started
    for served in started:
        served.kill()


def vm_states(workspace: Workspace) -> dict[str, str]:
    """Each sim VM's state, by name, straight from the fleet."""
    with workspace.fleet() as fleet:
        shown = fleet.show()
    return {vm["name"]: vm["state"] for host in shown["hosts"].values() for vm in host["vms"]}


def vm_memory(workspace: Workspace) -> dict[str, int]:
    with workspace.fleet() as fleet:
        shown = fleet.show()
    return {vm["name"]: int(vm["memory"]) for host in shown["hosts"].values() for vm in host["vms"]}
