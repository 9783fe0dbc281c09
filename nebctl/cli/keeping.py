"""A run's side of kept plans (``controller.kept_plans``) for ``diff`` and ``apply``: the digest of its inputs,
read before the manifests are loaded, the kept plan found with it, and the plan to keep; and where the CLI keeps
its caches (the checked manifest files and the kept plans).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nebctl.cli.app import AppContext, CliError
from nebctl.cli.database import open_store, secret_key_file
from nebctl.cli.session import cache_directory, open_registry
from nebctl.controller.applying import PlannedApply, PlanOptions
from nebctl.core.keys import ResourceKey
from nebctl.core.plans import Plan
from nebctl.database.errors import DatabaseError
from nebctl.schemas.models import AnyManifest


class Keeping:
    """A run's side of ``controller.kept_plans``: the digest of its inputs, read before the manifests are loaded,
    and the kept plan found with it or the plan to keep. Off (every method a no-op) without the cache directory
    (``manifest_cache: false``, which turns off both caches) or for a run the plan is not the whole of (a saved
    plan, ``--recover``, ``--out``, ``--graph``)."""

    def __init__(self, app: AppContext, paths: Sequence[str], options: PlanOptions | None, *, enabled: bool) -> None:
        self.app = app
        self.paths = paths
        self.options = options
        self.kept: Any = None
        self.before: bytes | None = None
        cache = cache_directory(app)
        if enabled and cache is not None and options is not None:
            from nebctl.controller.kept_plans import KeptPlans

            self.kept = KeptPlans(cache / "plans", database=app.db_url, stack=options.stack)
            self.before = self._inputs()

    def _inputs(self) -> bytes | None:
        from nebctl.controller.kept_plans import inputs_digest

        assert self.options is not None
        key_file = secret_key_file(self.app)
        return inputs_digest(
            paths=self.paths,
            options=[self.options, getpass.getuser(), str(key_file)],
            configuration=self.app.settings.model_dump_json(),
            key_file=key_file,
        )

    def find(self, *, fingerprinted: bool = False) -> Plan | None:
        """The kept plan for these inputs, if every input is as it was (and it was kept with its fingerprint, where
        ``fingerprinted``: the run shows it). The store and the drivers are opened only when a kept plan has these
        inputs; any trouble with them means planning, which reports it."""
        if self.kept is None or self.before is None:
            return None
        try:
            found: Plan | None = self.kept.find(
                self.before,
                lambda: open_store(self.app),
                lambda: open_registry(self.app),
                fingerprinted=fingerprinted,
            )
        except (DatabaseError, CliError):
            return None
        return found

    def keep(self, planned: PlannedApply, documents: Mapping[ResourceKey, AnyManifest]) -> None:
        if self.kept is None or self.before is None or planned.plan.has_changes:
            return
        try:
            self.kept.keep(
                before=self.before,
                after=self._inputs(),
                plan=planned.plan,
                documents=documents,
                hosts=planned.hosts,
                versions=planned.versions,
                token=planned.request.live.token,
                resealed=bool(planned.resealed),
                store=open_store(self.app),
                table=planned.table,
            )
        except (DatabaseError, CliError):
            return


def early_options(selection: Callable[[], PlanOptions]) -> PlanOptions | None:
    """The options, for the kept plan's digest, before the manifests are loaded; None when they are wrong (the
    manifests' problems are reported first, then the options', as without a kept plan)."""
    try:
        return selection()
    except CliError:
        return None
