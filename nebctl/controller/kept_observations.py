"""The last observation a plan made, kept so that the next plan reuses it instead of probing every host again,
while the monitoring drivers vouch that nothing they report has changed since.

A plan observes every host (``observing.observe``) and keeps what it saw in the database (observations and usage
samples). When the same hosts' drivers give the same word for their state (``ObservationTokenDriver``: equal
words are equal probes and listings, usage figures aside), observing again would see the same thing and keeping
it again would write the same rows: an edit of one file, then ``diff``, need not pay for either.

A kept observation is reused only when all of these hold:

- it was made for the same hosts (names, URIs, driver overrides) and listed the same hosts' objects;
- the drivers' word for those hosts is the one the observation was made under (``LiveView.token``, which
  ``observe`` sets only when the word did not move while it probed);
- its hosts' usage figures are at most ``max_age`` seconds old (the ``observation_max_age`` setting, 60 by
  default: as old as the service's host probes let a host's figures get). They are left out of the drivers' word
  because they move with the clock: they may be that old, never older. An observation older than that is brought
  up to date by probing each host again, not its VMs (``Reusable.aged``, ``observing.probe_figures``): their
  states are what the drivers vouch for, and their own usage figures are read by no plan, only by the samples
  ``top`` shows, which are then written for the hosts alone;
- the caller checked that no VM's requirements read usage figures (a VM already placed moves once they fail
  where it runs, so such a plan needs fresh ones).

When only the drivers' word moved, and they gave a word for each host too (``LiveView.host_tokens``), the kept
observation may still serve with the hosts whose word moved probed again (``Reusable``, ``observing.observe_again``):
an apply acts on a few hosts of many. The view made so counts as old as the one kept.

Where the database's change counters are those the observation was kept under, its rows are still in the
database and nothing is written again. Otherwise the caller keeps it again against the records as they are now:
only the rows of the hosts probed again and of the records that moved since its rows were written, which a digest
of each record's row as they were worded from tells (``KeptObservation.worded``, ``RecordRows.row_digests``).

``ObservationKeeper`` keeps one in memory (the service's controller, which plans many times) or in a directory
(the CLI's ``STATE_DIR/cache/observations``: one entry per database, in the format of ``schemas.caching``'s
entries, never found by another version of nebctl; without the applied spec each VM's ownership carries, which
no plan reads; its VMs and listings read back only where a plan reads them). Reading never fails a plan: a
missing, stale, corrupt or foreign entry means observing as usual. Deleting the directory is always safe.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nebctl.controller.kept_plans import code_digest
from nebctl.controller.observing import DriverSource, observation_token
from nebctl.core.deferred import Deferred, DeferredChunks, DeferredPart
from nebctl.database.versions import Versions
from nebctl.drivers.types import HostRef, VMStatus
from nebctl.reconcilers.base import LiveView
from nebctl.schemas.caching import Entries

log = logging.getLogger(__name__)

MAX_AGE = 60.0  # seconds: the service's default host probe interval


@dataclass(frozen=True)
class KeptObservation:
    """One observation and what it was made for."""

    hosts: Mapping[str, tuple[HostRef, Any]]  # the hosts observed, with their drivers' overrides
    listed: frozenset[str]  # the hosts whose objects were listed
    live: LiveView  # its token is the drivers' word it was made under
    at: float  # when it was made (``time.time()``)
    versions: Versions | None  # the change counters once it was kept in the database; None if it was not
    # The digests of the records' rows its rows in the database were worded from, when it was written there
    # (``RecordRows.row_digests``, end to end): those rows stand for the records whose row's digest is among them
    # (a row's digest covers its key), on the hosts not probed again. Bytes, not a mapping by key: reading 10,000
    # keys back from a pickle took 30 ms.
    worded: bytes | None = None


@dataclass(frozen=True)
class Reusable:
    """A kept observation that may be used again (``ObservationKeeper.reusable``): as it is (``whole``: the drivers
    vouch that the hosts are as it saw them), or with the hosts whose word moved probed again; when it is older than
    its usage figures may be (``aged``), with every host's own probe made again too."""

    kept: KeptObservation
    whole: bool
    aged: bool = False


class ObservationKeeper:
    """The last observation of one database's hosts, in memory or in ``directory``."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        database: str = "",
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._entries = Entries(directory, code_digest()) if directory is not None else None
        self._name = self._entries.key(b"observation", database.encode()) if self._entries is not None else ""
        self._memory: KeptObservation | None = None
        self.max_age = max_age
        self.clock = clock

    def missing(self) -> bool:
        """Whether nothing is kept, told without reading anything (a plan then observes afresh, and reads every
        record to write what it saw)."""
        if self._entries is None:
            return self._memory is None
        return self._entries.modified(self._name) is None

    def find(
        self, hosts: Mapping[str, tuple[HostRef, Any]], listed: Collection[str], registry: DriverSource
    ) -> KeptObservation | None:
        """The kept observation of ``hosts`` (those of ``listed`` listed too) while their drivers' word is still
        the one it was made under and it is young enough; else None. Asks each driver once, when one is kept."""
        found = self.reusable(hosts, listed, registry)
        return found.kept if found is not None and found.whole and not found.aged else None

    def reusable(
        self, hosts: Mapping[str, tuple[HostRef, Any]], listed: Collection[str], registry: DriverSource
    ) -> Reusable | None:
        """The kept observation of ``hosts`` (those of ``listed`` listed too), whether their drivers' word is still
        the one it was made under (``Reusable.whole``), and whether it is older than ``max_age`` (``Reusable.aged``).
        One whose word moved, or that is too old, is found only when it holds each host's word too
        (``LiveView.host_tokens``): the caller then probes again the hosts whose word moved, and the others' own
        probes when it is too old (``observing.observe_again``). None otherwise, and for one made later than now (a
        clock that moved back). Asks each driver once, when one is kept."""
        kept = self._memory if self._entries is None else self._entries.get(self._name)
        if not isinstance(kept, KeptObservation) or kept.live.token is None:
            return None
        age = self.clock() - kept.at
        if age < 0 or kept.listed != frozenset(listed) or dict(kept.hosts) != dict(hosts):
            return None
        aged = age > self.max_age
        if aged and kept.live.host_tokens is None:
            return None
        if observation_token(hosts, registry) != kept.live.token:
            return Reusable(kept, whole=False, aged=aged) if kept.live.host_tokens is not None else None
        if not aged:
            log.info("the drivers vouch that the hosts are as observed %.1f s ago: that observation is reused", age)
        return Reusable(kept, whole=True, aged=aged)

    def keep(self, observation: KeptObservation) -> None:
        """Keep ``observation`` for the next plan (only one the drivers vouched for can ever be found again)."""
        if observation.live.token is None:
            return
        if self._entries is None:
            self._memory = observation
        else:
            self._entries.put(self._name, dataclasses.replace(observation, live=_as_kept(observation.live)))


Copied = TypeVar("Copied")


def _copied(value: Copied, **changes: Any) -> Copied:
    """``dataclasses.replace`` of a frozen dataclass without slots or ``__post_init__`` (a VM's status, its
    ownership): its attributes copied as they are, with ``changes``. ``replace`` runs ``__init__`` with every field
    looked up again, which was most of the time to keep a fleet's observation (20,000 copies at 10,000 VMs)."""
    copy: Copied = object.__new__(type(value))
    copy.__dict__.update(value.__dict__, **changes)
    return copy


def _without_spec(status: VMStatus) -> VMStatus:
    """``status`` without the spec its ownership carries."""
    if status.owner is None or status.owner.spec is None:
        return status
    return _copied(status, owner=_copied(status.owner, spec=None))


def _as_kept(live: LiveView) -> LiveView:
    """``live`` as the file keeps it: without the spec each VM's ownership carries (only recovery reads those, from
    a survey of its own, never a plan; they were most of a large observation's size and of the time to read it
    back), its VMs in chunks by host and its listings apart, each read back when first read (``core.deferred``): a
    plan on the view its kept trace was made from reads the VMs it plans again, and nothing else of them."""
    # A view observed partly again (``observing.observe_again``) shares the chunks read back of the hosts it did
    # not probe again, as they were written: only the new ones are made and pickled.
    vms = (
        live.vms.changed(_without_spec)
        if isinstance(live.vms, DeferredChunks)
        else DeferredChunks({uuid: _without_spec(status) for uuid, status in live.vms.items()}, live.vm_hosts.get)
    )
    listings: Deferred[tuple[Mapping[Any, Any], ...]] = Deferred((live.objects, live.fingerprints))
    return dataclasses.replace(
        live,
        vms=vms,
        objects=DeferredPart(listings, 0),
        fingerprints=DeferredPart(listings, 1),
    )
