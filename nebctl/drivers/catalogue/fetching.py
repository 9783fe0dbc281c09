"""A catalogue's index text, read from its path, or downloaded from its URL and kept with its HTTP validators.

A downloaded index is stored under ``STATE_DIR/marketplaces/NAME.json`` with its ``ETag`` and
``Last-Modified``. Within the marketplace's ``refresh`` interval the stored copy is used as it is; after it (or
when ``nebctl market refresh`` forces it) the server is asked with ``If-None-Match`` / ``If-Modified-Since``,
and a ``304 Not Modified`` costs no body. When the server cannot be reached, a stored copy is used (with a
warning in the log) rather than failing every import.

Used by ``catalogue.driver``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nebctl.drivers.downloads.fetching import USER_AGENT
from nebctl.drivers.errors import NotFoundError, PermanentError, TemporaryError
from nebctl.drivers.types import MarketplaceRef

log = logging.getLogger(__name__)

DRIVER = "catalogue"
MAX_INDEX_BYTES = 32 * 1024 * 1024
TIMEOUT = 30.0
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class IndexText:
    text: str
    base: str  # the URL or path relative image URLs resolve against
    fetched: float  # time.time() of the last successful read or validation
    from_cache: bool  # True: the stored copy served (fresh, 304, or the server unreachable)


class IndexStore:
    """Index texts by marketplace; ``directory`` None keeps no copy (every read asks the server)."""

    def __init__(self, directory: Path | None, *, clock: Any = time.time) -> None:
        self.directory = directory
        self.clock = clock

    def read(self, marketplace: MarketplaceRef, *, force: bool = False) -> IndexText:
        if marketplace.path is not None:
            path = Path(marketplace.path)
            try:
                return IndexText(path.read_text(encoding="utf-8"), str(path), self.clock(), False)
            except FileNotFoundError:
                raise NotFoundError(f"marketplace {marketplace.name}: no index at {path}", driver=DRIVER) from None
            except (OSError, UnicodeDecodeError) as error:
                raise PermanentError(f"marketplace {marketplace.name}: {path}: {error}", driver=DRIVER) from error
        if marketplace.url is None:
            raise PermanentError(f"marketplace {marketplace.name} has neither url nor path", driver=DRIVER)
        stored = self._load(marketplace)
        if stored is not None and not force and self.clock() - stored["fetched"] < marketplace.refresh:
            return IndexText(stored["text"], marketplace.url, stored["fetched"], True)
        try:
            return self._download(marketplace, stored)
        except TemporaryError as error:
            if stored is None:
                raise
            log.warning("marketplace %s: %s; using the index read at %s", marketplace.name, error, stored["fetched"])
            return IndexText(stored["text"], marketplace.url, stored["fetched"], True)

    def _download(self, marketplace: MarketplaceRef, stored: dict[str, Any] | None) -> IndexText:
        import httpx

        assert marketplace.url is not None
        url = marketplace.url
        headers = {"User-Agent": USER_AGENT}
        if stored is not None:
            if stored.get("etag"):
                headers["If-None-Match"] = stored["etag"]
            if stored.get("last_modified"):
                headers["If-Modified-Since"] = stored["last_modified"]
        try:
            with (
                httpx.Client(follow_redirects=True, max_redirects=MAX_REDIRECTS, timeout=TIMEOUT) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                status = response.status_code
                if status == 304 and stored is not None:
                    stored["fetched"] = self.clock()
                    self._save(marketplace, stored)
                    return IndexText(stored["text"], url, stored["fetched"], True)
                if status in (408, 429) or status >= 500:
                    raise TemporaryError(f"marketplace {marketplace.name}: {url}: HTTP {status}", driver=DRIVER)
                if status == 404:
                    raise NotFoundError(f"marketplace {marketplace.name}: {url}: HTTP 404 Not Found", driver=DRIVER)
                if status != 200:
                    raise PermanentError(
                        f"marketplace {marketplace.name}: {url}: HTTP {status} {response.reason_phrase}", driver=DRIVER
                    )
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_INDEX_BYTES:
                        raise PermanentError(
                            f"marketplace {marketplace.name}: {url}: the index is larger than {MAX_INDEX_BYTES} bytes",
                            driver=DRIVER,
                        )
                etag, last_modified = response.headers.get("etag"), response.headers.get("last-modified")
        except httpx.TooManyRedirects as error:
            raise PermanentError(f"marketplace {marketplace.name}: {url}: too many redirects", driver=DRIVER) from error
        except httpx.TransportError as error:
            raise TemporaryError(
                f"marketplace {marketplace.name}: {url}: {type(error).__name__}: {error}", driver=DRIVER
            ) from error
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise PermanentError(f"marketplace {marketplace.name}: {url}: the index is not UTF-8", driver=DRIVER) from (
                error
            )
        record = {"url": url, "etag": etag, "last_modified": last_modified, "fetched": self.clock(), "text": text}
        self._save(marketplace, record)
        return IndexText(text, url, record["fetched"], False)

    def _file(self, marketplace: MarketplaceRef) -> Path | None:
        return self.directory / f"{marketplace.name}.json" if self.directory is not None else None

    def _load(self, marketplace: MarketplaceRef) -> dict[str, Any] | None:
        path = self._file(marketplace)
        if path is None:
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            return None  # a damaged file: read the index again
        kept: dict[str, Any] = record
        return kept if kept.get("url") == marketplace.url else None  # another URL now: read it

    def _save(self, marketplace: MarketplaceRef, record: dict[str, Any]) -> None:
        path = self._file(marketplace)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record), encoding="utf-8")
        os.replace(temporary, path)
        with contextlib.suppress(OSError):
            temporary.unlink()
