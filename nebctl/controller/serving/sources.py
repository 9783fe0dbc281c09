"""Where the service's manifests come from: a directory (watched) or a git repository (cloned and fetched).

A source's ``load`` returns a ``Snapshot``: the validated documents, or every problem (FILE:LINE:COL: message)
when the set is invalid, with the revision it was read at. ``DirectorySource`` watches its tree with watchdog and
calls back on each change that is not an editor's temporary or swap file (the service debounces them);
``GitSource`` keeps a bare clone in the data directory, fetches its branch on request, and exports exactly one
commit's tree, so what is applied is always one commit, never a half-updated working tree.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import shutil
import tarfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from nebctl.controller.revisions import GitError, checkout_revision, commit_of, git, git_bytes
from nebctl.core.keys import ResourceKey
from nebctl.database.records import RevisionRecord
from nebctl.schemas.loading import ManifestError, load_paths
from nebctl.schemas.models import AnyManifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """The manifests at one revision: ``documents`` when valid, else ``problems`` (and no documents)."""

    documents: Mapping[ResourceKey, AnyManifest] | None
    problems: tuple[str, ...] = ()
    revision: RevisionRecord | None = None
    files: int = 0

    @property
    def valid(self) -> bool:
        return self.documents is not None


def load_snapshot(path: Path, revision: RevisionRecord | None, cache: Path | None = None) -> Snapshot:
    """The manifests under ``path``; with ``cache`` (a directory), files that did not change since an earlier
    load are not parsed again (``schemas.caching``: the same result, the same problems)."""
    try:
        if cache is not None:
            from nebctl.schemas.caching import load_paths_cached

            manifests = load_paths_cached([path], cache, remember=True)
        else:
            manifests = load_paths([path])
    except ManifestError as error:
        return Snapshot(None, tuple(str(d) for d in error.diagnostics), revision)
    return Snapshot(dict(manifests.documents), (), revision, len(manifests.files))


class Source(Protocol):
    def load(self) -> Snapshot:
        """Read the manifests as they are now."""
        ...

    def refresh(self) -> bool:
        """Bring the source up to date (a fetch); true when its revision moved."""
        ...

    def watch(self, on_change: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_change`` when the source changes by itself; returns the function that stops watching."""
        ...

    def describe(self) -> dict[str, Any]:
        """What and where the source is, without secrets (for the status and the logs)."""
        ...


# Files editors write next to the ones being edited: vim's swap files and its write test (4913), emacs' backup,
# autosave and lock files, and the temporary files many tools write before renaming over the real one.
_IGNORED = re.compile(r"(^\.|^#.*#$|~$|^4913$|\.(swp|swo|swx|swpx|tmp|temp|part|bak|kate-swp)$|^\.#)")


def ignored(path: str) -> bool:
    """Whether a change of ``path`` is an editor's scratch file rather than a manifest."""
    return bool(_IGNORED.search(Path(path).name))


class DirectorySource:
    """A directory of manifests; its revision is the HEAD of the git checkout it lies in, if any."""

    def __init__(self, path: Path, cache: Path | None = None) -> None:
        self.path = path
        self.cache = cache  # where checked manifest files are kept (``schemas.caching``), if anywhere

    def load(self) -> Snapshot:
        return load_snapshot(self.path, checkout_revision(self.path), self.cache)

    def refresh(self) -> bool:
        return False  # the watcher notices changes, and every resync reads the directory again

    def watch(self, on_change: Callable[[], None]) -> Callable[[], None]:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                if event.is_directory and event.event_type == "modified":
                    return  # a file in it changed: that file's own event says whether it matters
                paths = [event.src_path, getattr(event, "dest_path", "")]
                if all(not p or ignored(str(p)) for p in paths):
                    return
                on_change()

        observer = Observer()
        observer.schedule(Handler(), str(self.path), recursive=True)
        observer.daemon = True
        observer.start()

        def stop() -> None:
            observer.stop()
            observer.join(timeout=5)

        return stop

    def describe(self) -> dict[str, Any]:
        return {"type": "directory", "path": str(self.path)}


def redacted(url: str) -> str:
    """``url`` without a password or token in its user part (``https://user:token@host/...``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and not (parts.username and parts.scheme in ("http", "https")):
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


@dataclass
class GitSource:
    """A git repository's branch: a bare clone under ``workdir``, one exported tree per applied commit."""

    url: str
    workdir: Path
    branch: str | None = None
    path: str = "."
    _sha: str | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def repository(self) -> Path:
        return self.workdir / hashlib.sha256(self.url.encode()).hexdigest()[:16] / "repo.git"

    @property
    def checkouts(self) -> Path:
        return self.repository.parent / "trees"

    def _clone(self) -> None:
        if (self.repository / "HEAD").exists():
            return
        self.repository.parent.mkdir(parents=True, exist_ok=True)
        partial = self.repository.with_name("repo.partial")
        shutil.rmtree(partial, ignore_errors=True)
        args = ["clone", "--bare", "--quiet"]
        if self.branch:
            args += ["--branch", self.branch]
        git([*args, "--", self.url, str(partial)], timeout=600)
        partial.rename(self.repository)  # a clone killed halfway is started again, never half used

    def _branch(self) -> str:
        if self.branch is None:
            # The remote's default branch, which a bare clone's HEAD names.
            self.branch = git(["symbolic-ref", "--short", "HEAD"], cwd=self.repository).strip()
        return self.branch

    def refresh(self) -> bool:
        try:
            return self._refresh()
        except GitError as error:
            # git may quote the URL it was given, password and all: never let that reach an event or a log.
            raise GitError(str(error).replace(self.url, redacted(self.url))) from None

    def _refresh(self) -> bool:
        with self._lock:
            self._clone()
            branch = self._branch()
            git(
                ["fetch", "--quiet", "--prune", "origin", f"+refs/heads/{branch}:refs/heads/{branch}"],
                cwd=self.repository,
                timeout=600,
            )
            sha = git(["rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}"], cwd=self.repository).strip()
            moved = sha != self._sha
            self._sha = sha
            return moved

    def _tree(self, sha: str) -> Path:
        """The commit's tree, exported once into its own directory (older ones are removed)."""
        target = self.checkouts / sha
        if not target.exists():
            data = git_bytes(["archive", "--format=tar", sha], cwd=self.repository)
            partial = self.checkouts / f"{sha}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                archive.extractall(partial, filter="data")
            partial.rename(target)
        for other in self.checkouts.iterdir():
            if other.name != sha:
                shutil.rmtree(other, ignore_errors=True)
        return target

    def load(self) -> Snapshot:
        try:
            if self._sha is None:
                self.refresh()
            with self._lock:
                sha = self._sha
                assert sha is not None
                revision = commit_of(self.repository, sha, source=redacted(self.url))
                root = self._tree(sha)
        except (GitError, OSError, tarfile.TarError) as error:
            return Snapshot(None, (f"{redacted(self.url)}: {error}",), None)
        where = (root / self.path).resolve()
        if not where.is_relative_to(root.resolve()) or not where.exists():
            return Snapshot(None, (f"{redacted(self.url)}: no {self.path} in commit {sha[:12]}",), revision)
        return load_snapshot(where, revision)

    def watch(self, on_change: Callable[[], None]) -> Callable[[], None]:
        return lambda: None  # fetched on the interval and on request; a webhook is only a request

    def describe(self) -> dict[str, Any]:
        return {"type": "git", "url": redacted(self.url), "branch": self.branch, "path": self.path, "commit": self._sha}
