"""``nebctl --version``: the version, and the commit when nebctl runs from a git checkout (an editable install).

Read only when ``--version`` is given: it asks git about the directory that holds the ``nebctl`` package, so a
copy installed into site-packages (no checkout around it) prints the version alone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nebctl

# The checkout that holds this package, if any: the directory above ``nebctl/``.
_SOURCE = Path(nebctl.__file__).resolve().parent.parent


def checkout_commit(root: Path = _SOURCE) -> tuple[str, bool] | None:
    """The commit checked out at ``root`` and whether the tree has uncommitted changes; None outside a
    checkout, or without git."""
    if not (root / ".git").exists():  # a directory, or a file in a linked worktree
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit, bool(status.strip())) if commit else None


def version_text() -> str:
    """``nebctl 0.1.0``, or ``nebctl 0.1.0 (commit 3535914ab2c1, with uncommitted changes)`` from a checkout."""
    text = f"nebctl {nebctl.__version__}"
    found = checkout_commit()
    if found is not None:
        commit, dirty = found
        text += f" (commit {commit[:12]}{', with uncommitted changes' if dirty else ''})"
    return text
