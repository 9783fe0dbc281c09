"""Where an image's bytes come from, for the controller: marketplace appliances resolved through their
Marketplace's driver, and http(s) sources fetched once into the image cache, whose local copy every host's
storage driver is then fed from (so three hosts cost one download).

``ImageSources`` is built by ``controller.applying`` for an apply (the execution world's ``appliance`` and
``fetch_image``) and for the plan-time check that every appliance the manifests name exists
(``missing_appliances``); ``nebctl market`` uses ``marketplace_ref``.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nebctl.core.families import Family
from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.settings import Settings
from nebctl.drivers import context
from nebctl.drivers.downloads import ImageCache
from nebctl.drivers.errors import DriverError, NotFoundError, PermanentError, TemporaryError
from nebctl.drivers.types import Appliance, MarketplaceRef
from nebctl.schemas.models import AnyManifest, Image, Marketplace, MarketplaceSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalImage:
    """An image source as a local file, ready for a storage driver."""

    path: str
    sha256: str | None
    transfer: Mapping[str, Any] | None = None  # the download's figures; None when nothing was downloaded


def parse_marketplace_source(text: str) -> tuple[str, str, str | None]:
    """``NAME/APP@1.2`` -> ('NAME', 'APP', '1.2'); the version is None when not given."""
    marketplace, _, rest = text.partition("/")
    app, _, version = rest.partition("@")
    return marketplace, app, version or None


def marketplace_ref(document: Marketplace) -> MarketplaceRef:
    spec = document.spec
    return MarketplaceRef(name=document.metadata.name, url=spec.url, path=spec.path, refresh=spec.refresh)


class ImageSources:
    def __init__(self, *, registry: Any, settings: Settings, documents: Mapping[ResourceKey, AnyManifest]) -> None:
        self.registry = registry
        self.settings = settings
        self.documents = documents
        root = settings.image_cache.root(settings.state_dir)
        self.cache = ImageCache(root, limit=settings.image_cache.limit) if root is not None else None
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._refused: dict[tuple[str, str], str] = {}  # downloads refused for good during this apply

    def marketplace(self, name: str) -> tuple[Any, MarketplaceRef]:
        document = self.documents.get(ResourceKey.of(Kind.MARKETPLACE, name))
        if not isinstance(document, Marketplace):
            raise PermanentError(f"marketplace/{name} is not declared")
        return self.registry.get(Family.MARKETPLACE, document.spec.driver), marketplace_ref(document)

    def appliance(self, marketplace: str, app: str, version: str | None = None) -> Appliance:
        driver, ref = self.marketplace(marketplace)
        result: Appliance = driver.import_(ref, app, version=version)
        return result

    def fetch_image(self, source: str, *, sha256: str | None, size: int | None = None) -> LocalImage:
        """A local file holding ``source``: an http(s) URL through the cache (downloaded at most once, under
        the running action's deadline, its progress reported to the action), a path or file:// URL as is."""
        scheme = urllib.parse.urlsplit(source).scheme
        if scheme not in ("http", "https"):
            return LocalImage(source, sha256)
        if sha256 is None:
            raise PermanentError(f"{source}: an http(s) image needs a sha256 to be verified")
        if self.cache is None:
            raise PermanentError("no image cache directory: set state_dir or image_cache.dir in the configuration")
        call = context.current()
        key = (source, sha256.lower())
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        # The hosts' imports of one image wait for one another here: when the first one's download is refused
        # for good (a wrong digest, a 404), the others get its error instead of downloading it again.
        if not lock.acquire(timeout=max(0.0, call.remaining(3600.0))):
            raise TemporaryError(f"{source}: still being downloaded by another action; gave up waiting")
        try:
            refused = self._refused.get(key)
            if refused is not None:
                raise PermanentError(refused)
            try:
                cached = self.cache.fetch(
                    source,
                    sha256=sha256,
                    size=size,
                    deadline=call.deadline,
                    cancelled=call.cancelled,
                    report=call.progress,
                )
            except PermanentError as error:
                self._refused[key] = error.message
                raise
        finally:
            lock.release()
        transfer = None
        if cached.transfer is not None:
            moved = cached.transfer.size - cached.transfer.resumed
            transfer = {
                "bytes": cached.transfer.size,
                "seconds": round(cached.transfer.seconds, 3),
                "rate": round(moved / cached.transfer.seconds) if cached.transfer.seconds > 0 else None,
                "requests": cached.transfer.requests,
                "resumed": cached.transfer.resumed,
            }
        return LocalImage(str(cached.path), cached.sha256, transfer)

    def missing_appliances(self, keys: Any) -> list[str]:
        """Problems with the marketplace sources of the images ``keys``: an appliance (or version) the
        catalogue lacks or refuses, a catalogue that cannot be read. One line per image, naming it."""
        problems: list[str] = []
        for key in keys:
            document = self.documents.get(key)
            if not isinstance(document, Image) or not isinstance(document.spec.source, MarketplaceSource):
                continue
            name, app, version = parse_marketplace_source(document.spec.source.marketplace)
            try:
                self.appliance(name, app, version)
            except NotFoundError as error:
                problems.append(f"{key}: {error.message}")
            except DriverError as error:
                problems.append(f"{key}: marketplace {document.spec.source.marketplace}: {error.message}")
        return problems
