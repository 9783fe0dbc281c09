"""Plans that changed nothing, kept with what they were made from, so that ``diff`` and ``apply`` on an unchanged
set cost reading the files, two small queries and one question to each backend, rather than a plan.

Used by the CLI's ``diff`` and ``apply``. A plan is made from, and a kept one is found again only while each of
these is as it was:

- the manifests: the files ``-f`` expands to, in order, and each one's exact bytes (never a modification time,
  so a file rewritten within the same second counts as changed);
- the options (stack, prune, targets, excludes, the user and groups whose quotas apply), the configuration,
  the database's URL, the key file of the secrets, nebctl's own code and Python's version;
- the database: its change counters (``database.versions``: every write of records, observations, users,
  tokens and quotas raises one), a summary of the resources table (a database made again from nothing counts
  from zero again) and the quotas themselves;
- the live state: the monitoring drivers' word for it (``drivers.protocols.ObservationTokenDriver``).

Only a plan that changed nothing is kept, and only when it reseals no record, its inputs read the same before and
after it was made (the counters: with nothing but the plan's own keeping of what it observed between), every
host's driver vouched for the live state without it moving meanwhile, and no VM's requirements read a host's
usage figures (which the drivers' word leaves out: they move with the clock). Anything else, or a kept file that
is missing, truncated, corrupt or from another version, means planning as usual. Deleting the directory is
always safe.

A plan is kept with its fingerprint (``Plan.fingerprint``: a digest of every document, record and VM it was made
from) only when its run computed it, to show it: the text of a plan never does, and computing it was a fifth of
keeping a plan of 10,000 resources. A run that shows it (``diff -o json``) takes only a kept plan that has it.

What a kept plan does not redo is the observation's keeping: ``get``, ``hosts`` and ``top`` show what the plan
that was kept observed (the same, since the drivers' word is the same), with that plan's time. The files hold
digests of the inputs, never the inputs: no secret of the manifests or the configuration is written here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from nebctl.controller.observing import DriverSource, observation_token
from nebctl.controller.placement import documents_read_usage
from nebctl.core.keys import ResourceKey
from nebctl.core.plans import Plan
from nebctl.database.store import Store
from nebctl.database.versions import Versions
from nebctl.drivers.types import HostRef
from nebctl.schemas.caching import Entries
from nebctl.schemas.models import AnyManifest
from nebctl.schemas.reading.sources import expand_paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Kept:
    """One kept plan and the digests it must be found with."""

    inputs: bytes  # the files, options, configuration and key file
    versions: Versions  # the change counters once it was made
    table: tuple[Any, ...]  # ``Store.resources_stamp`` once it was made
    quotas: str  # every quota, as text
    hosts: Mapping[str, tuple[HostRef, Any]]  # the hosts it observed, to ask their drivers again
    live: bytes  # a digest of the drivers' word for what it observed
    plan: Plan


class KeptPlans:
    """The kept plan of one stack on one database, in ``directory`` (the CLI's: ``STATE_DIR/cache/plans``)."""

    def __init__(self, directory: Path, *, database: str, stack: str) -> None:
        self._entries = Entries(directory, code_digest())
        self._name = self._entries.key(b"plan", database.encode(), stack.encode())
        # The inputs' digest of the kept plan, apart: a run whose inputs are others (a file edited since) tells
        # it from a few bytes instead of reading the plan back (13 ms at 10,000 VMs). Only ever a way to find
        # nothing sooner: a plan found is checked against its own inputs.
        self._inputs_name = self._entries.key(b"plan-inputs", database.encode(), stack.encode())
        self._stack = stack
        # The entry last read, with its file's identity: ``apply`` looks twice (before and under the writers' lock)
        # and a large plan takes a while to read back.
        self._read: tuple[tuple[int, int, int], object] | None = None

    def _entry(self) -> object:
        try:
            status = os.stat(self._entries.path(self._name))
        except OSError:
            return None
        identity = (status.st_ino, status.st_size, status.st_mtime_ns)
        if self._read is None or self._read[0] != identity:
            self._read = (identity, self._entries.get(self._name))
        return self._read[1]

    def find(
        self,
        inputs: bytes,
        store: Callable[[], Store],
        registry: Callable[[], DriverSource],
        *,
        fingerprinted: bool = False,
    ) -> Plan | None:
        """The kept plan when ``inputs`` (``inputs_digest``), the database and the live state are as when it was
        made, and it was kept with its fingerprint where ``fingerprinted`` (the caller shows it); else None. Opens
        the store and the drivers (``store``, ``registry``) only when a kept plan has these inputs; then reads the
        database three times (small queries) and asks each host's driver once."""
        told = self._entries.get(self._inputs_name)
        if isinstance(told, bytes) and told != inputs:
            return None
        kept = self._entry()
        if not isinstance(kept, _Kept) or kept.inputs != inputs or (fingerprinted and not kept.plan.has_fingerprint):
            return None
        opened = store()
        if opened.change_versions() != kept.versions or opened.resources_stamp() != kept.table:
            return None
        if repr(opened.list_quotas()) != kept.quotas:
            return None
        word = observation_token(kept.hosts, registry())
        if word is None or _digest(word.encode()) != kept.live:
            return None
        log.info("nothing a plan is made from changed since the last plan of stack %s: it is shown again", self._stack)
        return kept.plan

    def keep(
        self,
        *,
        before: bytes | None,
        after: bytes | None,
        plan: Plan,
        documents: Mapping[ResourceKey, AnyManifest],
        hosts: Mapping[str, tuple[HostRef, Any]],
        versions: Versions | None,
        token: str | None,
        resealed: bool,
        store: Store,
        table: tuple[Any, ...] | None = None,
    ) -> bool:
        """Keep ``plan`` if it may be found again (the module's rules); ``before`` and ``after`` are the inputs'
        digests read before the manifests were loaded and once the plan was made. ``table`` is the resources
        table's summary at ``versions``, when the caller knows it (else it is read). Whether it was kept."""
        if (
            before is None
            or before != after
            or versions is None
            or token is None
            or resealed
            or plan.has_changes
            or documents_read_usage(documents)
        ):
            return False
        if table is None:
            table = store.resources_stamp()
        quotas = repr(store.list_quotas())
        if store.change_versions() != versions:
            return False  # a write came after the plan: what was just read may not be what it read
        kept = _Kept(before, versions, table, quotas, dict(hosts), _digest(token.encode()), plan)
        # The plan first, then its inputs' digest: a crash between them leaves a digest that finds nothing or the
        # plan, which is checked against its own.
        self._entries.put(self._name, kept)
        self._entries.put(self._inputs_name, before)
        return True


def inputs_digest(
    *,
    paths: Sequence[str],
    options: Sequence[object],
    configuration: str,
    key_file: Path,
) -> bytes | None:
    """A digest of what a plan reads outside the database and the live state: the manifest files (as ``-f``
    expands them, each one's bytes), ``options`` (their ``repr``), ``configuration`` (the settings as text) and
    the key file. None when a path cannot be expanded or a file read: the loader reports that."""
    files, diagnostics = expand_paths(paths)
    if diagnostics:
        return None
    digest = hashlib.sha256()

    def add(part: bytes) -> None:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)

    add(repr(list(options)).encode())
    add(configuration.encode())
    try:
        add(key_file.read_bytes())
    except FileNotFoundError:
        add(b"")
    except OSError:
        return None
    for file in files:
        try:
            data = Path(file).read_bytes()
        except OSError:
            return None
        add(file.encode("utf-8", "surrogatepass"))
        add(data)
    return digest.digest()


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@cache
def code_digest() -> bytes:
    """nebctl's own code (every module, read once per process) and Python's version: a plan kept by any other
    version is never found."""
    import nebctl

    digest = hashlib.sha256(f"kept-plan 1\0{sys.version}\0".encode())
    root = Path(nebctl.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.digest()
