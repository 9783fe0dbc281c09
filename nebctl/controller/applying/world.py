"""What a reconciler's ``realise`` may touch while a plan is applied (``reconcilers.base.World``): the drivers of
each host, the plan's documents, and the records as the journal updates them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nebctl.controller.observing import DriverSource
from nebctl.controller.sourcing import ImageSources, LocalImage
from nebctl.core.keys import ResourceKey
from nebctl.core.overlay import Overlay
from nebctl.database.records import ResourceRecord
from nebctl.drivers.errors import PermanentError
from nebctl.drivers.registry import HostDriverSet
from nebctl.drivers.types import Appliance, HostRef, Ownership
from nebctl.reconcilers.base import RecordView
from nebctl.schemas.models import AnyManifest


@dataclass
class ExecutionWorld:
    """``reconcilers.base.World`` over the registry, the plan's documents and the records being updated."""

    stack: str
    registry: DriverSource
    hosts: Mapping[str, tuple[HostRef, Any]]
    documents: Mapping[ResourceKey, AnyManifest]
    # The stack's records as planned, never written: what the journal writes goes on top (``keep``, ``drop``). A
    # plan made from a kept trace reads few records back (``database.record_rows``); neither does this.
    records: Mapping[ResourceKey, ResourceRecord]
    shutdown_timeout: float
    sources: ImageSources
    # What the ownership written on live objects carries (docs/ownership.md): this installation's id, and the
    # resolved spec of each resource of the plan with its secrets sealed (``seal``).
    installation: str = ""
    specs: Mapping[ResourceKey, Mapping[str, Any]] = field(default_factory=dict)
    seal: Callable[[ResourceKey, Mapping[str, Any]], Mapping[str, Any]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _drivers: dict[str, HostDriverSet] = field(default_factory=dict)
    _current: Overlay[ResourceKey, ResourceRecord] = field(init=False)

    def __post_init__(self) -> None:
        self._current = Overlay(self.records)

    def drivers(self, host: str) -> HostDriverSet:
        # Resolved once per host, not per action: the registry shares each driver anyway, and resolving (the
        # host's overrides dumped, four lookups under the registry's lock) was a share of every action's time.
        with self._lock:
            drivers = self._drivers.get(host)
        if drivers is None:
            ref, overrides = self._host(host)
            drivers = self.registry.for_host(ref, overrides)
            with self._lock:
                self._drivers[host] = drivers
        return drivers

    def host_ref(self, host: str) -> HostRef:
        return self._host(host)[0]

    def _host(self, host: str) -> tuple[HostRef, Any]:
        try:
            return self.hosts[host]
        except KeyError:
            raise PermanentError(f"host {host!r} is neither in the manifests nor recorded") from None

    def ownership(self, key: ResourceKey, incarnation: int = 0) -> Ownership:
        spec = self.specs.get(key)
        if spec is not None and self.seal is not None:
            spec = self.seal(key, spec)
        return Ownership(
            stack=self.stack,
            kind=key.kind.value,
            namespace=key.namespace,
            name=key.name,
            incarnation=incarnation,
            installation=self.installation,
            spec=dict(spec) if spec is not None else None,
        )

    def desired(self, key: ResourceKey) -> AnyManifest | None:
        return self.documents.get(key)

    def record(self, key: ResourceKey) -> RecordView | None:
        return self.current(key)

    # The journal's side: it keeps the records up to date as it writes them, while reconcilers read them from
    # the executor's worker threads.

    def current(self, key: ResourceKey) -> ResourceRecord | None:
        """The record of ``key`` as the journal last wrote it."""
        with self._lock:
            return self._current.get(key)

    def keep(self, record: ResourceRecord) -> None:
        """``record`` is now the resource's record."""
        with self._lock:
            self._current[record.key] = record

    def drop(self, key: ResourceKey) -> None:
        """The resource of ``key`` is gone, and so is its record."""
        with self._lock:
            self._current.pop(key, None)

    def appliance(self, marketplace: str, app: str, version: str | None = None) -> Appliance:
        return self.sources.appliance(marketplace, app, version)

    def fetch_image(self, source: str, *, sha256: str | None, size: int | None = None) -> LocalImage:
        return self.sources.fetch_image(source, sha256=sha256, size=size)
