"""Which revision of the manifests an apply applies: the commit of a git checkout, read with the git command.

``nebctl apply -f DIR`` and the service's directory source record the HEAD of a directory that lies in a git
checkout, and whether its tree had uncommitted changes; the service's git source records the commit it checked
out (``serving.sources``). An I/O edge: it runs ``git`` with an argument vector, never a shell.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

from nebctl.database.records import RevisionRecord

log = logging.getLogger(__name__)

GIT_TIMEOUT = 30.0
_FIELD_SEPARATOR = "\x1f"


class GitError(Exception):
    """A git command failed; the message says which and why (git's own words)."""


def git(args: Sequence[str], *, cwd: Path | None = None, timeout: float = GIT_TIMEOUT) -> str:
    """Run ``git ARGS`` and return its standard output; ``GitError`` with git's message when it fails."""
    command = ["git", *args]
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as error:
        raise GitError("git is not installed (the git command is needed for git sources)") from error
    except subprocess.TimeoutExpired as error:
        raise GitError(f"git {args[0]} did not finish within {timeout:g}s") from error
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise GitError(f"git {args[0]} failed: {message[-1] if message else f'exit status {done.returncode}'}")
    return done.stdout


def git_bytes(args: Sequence[str], *, cwd: Path, timeout: float = 600.0) -> bytes:
    """Run ``git ARGS`` and return its standard output as bytes (``git archive``)."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GitError(f"git {args[0]}: {error}") from error
    if done.returncode != 0:
        raise GitError(f"git {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def commit_of(repository: Path, commit: str, *, source: str | None = None, dirty: bool = False) -> RevisionRecord:
    """The sha, author and subject of ``commit`` in ``repository``."""
    text = git(["log", "-1", f"--format=%H{_FIELD_SEPARATOR}%an <%ae>{_FIELD_SEPARATOR}%s", commit], cwd=repository)
    sha, author, subject = ([*text.rstrip("\n").split(_FIELD_SEPARATOR), "", ""])[:3]
    return RevisionRecord(sha=sha, author=author or None, subject=subject or None, dirty=dirty, source=source)


def checkout_revision(path: Path) -> RevisionRecord | None:
    """The HEAD commit of the git checkout that holds ``path`` (a file or a directory), and whether the
    checkout has uncommitted changes under ``path``; None when ``path`` is in no checkout (or git is missing,
    or the repository has no commit yet)."""
    directory = path if path.is_dir() else path.parent
    try:
        top = Path(git(["rev-parse", "--show-toplevel"], cwd=directory).strip())
        status = git(["status", "--porcelain", "--", str(path.resolve())], cwd=top)
        return commit_of(top, "HEAD", source=str(top), dirty=bool(status.strip()))
    except (GitError, OSError) as error:
        log.debug("%s: no git revision: %s", path, error)
        return None
