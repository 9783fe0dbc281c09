"""The trace of a stack's last whole plan, kept between processes, so that ``diff`` or ``apply`` after an edit of a
few manifests redoes only what moved (``planning.incremental``) instead of planning every resource again.

Used by the CLI's ``diff`` and ``apply`` (``Controller`` with ``traces``), in ``STATE_DIR/cache/traces``. A kept
trace is handed to the planner only while the database holds the records it was made from: the change counters
(``database.versions``; every write of a record raises them) and the summary of the resources table
(``Store.resources_stamp``: a database made again from nothing counts from zero again) are those it was kept with,
read both before and after the records are. The planner itself compares the rest: the manifests (their
stamps, ``ManifestSet.stamps``), the options and what it reads of the live view (``planning.incremental``).

Only the trace of a whole plan is kept (a plan made from a kept trace leaves it in place: it stays valid for the
next edit, which compares its manifests with the same stamps). The trace holds the resolved specs, the changes and
the installation-wide results, never a manifest, a record or a secret: a resource whose resolved spec holds a
secret in clear is left out, and planned again every time. An entry written by another version of nebctl, or
truncated, corrupt or unreadable, is never used (``schemas.caching.Entries``); deleting the directory is always
safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nebctl.controller.kept_plans import code_digest
from nebctl.controller.planning import PlanTrace, kept_trace
from nebctl.core.keys import ResourceKey
from nebctl.database.sealing import has_clear_secret
from nebctl.database.store import Store
from nebctl.database.versions import Versions
from nebctl.schemas.caching import Entries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    """One kept trace and the state of the database it was made from."""

    versions: Versions
    table: tuple[Any, ...]
    trace: PlanTrace


class KeptTraces:
    """The kept trace of each stack of one database, in ``directory``."""

    def __init__(self, directory: Path, *, database: str) -> None:
        self._entries = Entries(directory, code_digest())
        self._database = database.encode()

    def _name(self, stack: str) -> str:
        return self._entries.key(b"trace", self._database, stack.encode())

    def find(self, stack: str, versions: Versions, store: Store) -> PlanTrace | None:
        """The kept trace of ``stack`` if the database's records are those it was made from: ``versions``, the
        change counters read before the records, must be those it was kept with, and still be (the caller reads
        them after the records too: ``versions`` is what both reads gave)."""
        kept = self._entries.get(self._name(stack))
        if not isinstance(kept, _Entry) or kept.versions != versions or kept.table != store.resources_stamp():
            return None
        return kept.trace

    def keep(
        self,
        stack: str,
        trace: PlanTrace,
        stamps: dict[ResourceKey, str],
        versions: Versions,
        store: Store,
    ) -> bool:
        """Keep ``trace`` (of a whole plan, made from the records as ``versions`` counts them) for the next
        process; whether it was kept."""
        unkept = frozenset(key for key, spec in trace.specs.items() if has_clear_secret(key.kind, spec))
        lean = kept_trace(trace, stamps, unkept)
        if lean is None:
            return False
        table = store.resources_stamp()
        if store.change_versions() != versions:
            return False  # a write came between: the table just read may not be the records the plan read
        self._entries.put(self._name(stack), _Entry(versions, table, lean))
        log.debug("the trace of this plan of stack %s is kept for the next", stack)
        return True
