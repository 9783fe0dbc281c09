"""Fixtures of the plan renderer tests: the ``--update-golden`` option and the golden-file comparison.

pytest registers options only from the conftest files it loads at start-up, so ``--update-golden`` is known
when pytest is pointed at this directory or a file in it (``pytest tests/unit/rendering --update-golden``);
``NEBCTL_UPDATE_GOLDEN=1`` works from anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "plans"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the plan renderers' golden files under tests/golden/plans instead of comparing with them",
    )


def updating(config: pytest.Config) -> bool:
    # getoption with a default: the option is only registered when this conftest is loaded at start-up.
    return bool(config.getoption("--update-golden", default=False)) or os.environ.get("NEBCTL_UPDATE_GOLDEN") == "1"


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``golden(name, produced)``: compare ``produced`` with ``tests/golden/plans/<name>``, or rewrite it."""
    update = updating(request.config)

    def check(name: str, produced: str) -> None:
        path = GOLDEN / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(produced, encoding="utf-8", newline="\n")
            return
        if not path.exists():
            pytest.fail(f"{path} is missing; create it with: pytest tests/unit/rendering --update-golden")
        expected = path.read_text(encoding="utf-8")
        assert produced == expected, f"{name} changed; if intended, rerun with --update-golden and review the diff"

    return check
