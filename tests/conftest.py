"""Fixtures shared by every test directory. Topic-specific fixtures live in each directory's conftest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO_ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    """In CI, tests that need a daemon must run: they fail instead of skipping when it cannot start."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# No deadline on an example: on a shared machine, a first example that pays for cold caches ran past the default
# 200 ms now and then, and failed a property that holds. Speed is measured by the benchmarks, not by tests.
settings.register_profile("nebctl", deadline=None)
settings.load_profile("nebctl")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


# Fixture modules shared across test directories (database servers, libvirtd...). Each owner adds its own line.
pytest_plugins: list[str] = ["tests.support.libvirtd", "tests.support.databases"]
pytest_plugins += ["tests.support.libvirtd_peer"]  # a second libvirtd, the migration target
