"""Fixtures shared by every test directory. Topic-specific fixtures live in each directory's conftest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    """In CI, tests that need a daemon must run: they fail instead of skipping when it cannot start."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


# Fixture modules shared across test directories (database servers, libvirtd...). Each owner adds its own line.
pytest_plugins: list[str] = ["tests.support.libvirtd", "tests.support.databases"]
pytest_plugins += ["tests.support.libvirtd_peer"]  # a second libvirtd, the migration target
