"""The encoded pages of the API's listings, kept in memory while the data they show is unchanged.

``PageCache.get(version, key, build)`` answers the page that ``build()`` made for ``key`` under ``version`` (the
database's ``resources`` change counter, read by the request before anything else: ``database.versions``), or
builds it. A new version drops every page of the old one, so a change made by any process sharing the database
is served from the next request that reads the counter. The key holds everything else the page depends on: the
query, and the caller's visibility (everything, or the caller's name and groups with the ``access`` counter that
the rules were read under), so that two callers who may see different things never share a page.

One build at a time per key: the requests that ask for a page being built wait for it rather than building it
again (50 clients after a change would otherwise build it 50 times). Bounded in pages and in bytes; a page
larger than a quarter of the bytes is served but not kept. Used by ``api.v1.reading``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class Page:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @cached_property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The response's headers as ASGI sends them (a JSON body): encoded once per page, not per answer."""
        return [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers.items()),
        ]


class PageCache:
    def __init__(self, *, max_pages: int = 256, max_bytes: int = 64 * 1024**2) -> None:
        self.max_pages = max_pages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._version = -1
        self._pages: dict[Hashable, Page] = {}
        self._bytes = 0
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, version: int, key: Hashable, build: Callable[[], Page]) -> Page:
        while True:
            with self._lock:
                if version < self._version:
                    # A request that read the counter before another's newer read: its page is built, not kept.
                    building = None
                    break
                self._renew(version)
                page = self._pages.get(key)
                if page is not None:
                    return page
                if key not in self._building:
                    building = self._building[key] = threading.Lock()
                    building.acquire()
                    break
                waited = self._building[key]
            with waited:  # another request builds this page: then its result, or a turn to build it
                pass
        if building is None:
            return build()
        try:
            page = build()
            with self._lock:
                if self._version == version:
                    self._keep(key, page)
            return page
        finally:
            with self._lock:
                self._building.pop(key, None)
            building.release()

    def peek(self, version: int, key: Hashable) -> Page | None:
        """The page kept for ``key`` under ``version``, without building it (nor waiting for its build)."""
        with self._lock:
            return self._pages.get(key) if version == self._version else None

    def put(self, version: int, key: Hashable, page: Page) -> None:
        """Keep ``page`` for ``key`` under ``version`` (unless a newer version was seen meanwhile)."""
        with self._lock:
            if version < self._version:
                return
            self._renew(version)
            self._keep(key, page)

    def _renew(self, version: int) -> None:
        if version > self._version:
            self._version = version
            self._pages.clear()
            self._bytes = 0

    def _keep(self, key: Hashable, page: Page) -> None:
        size = len(page.body)
        if size > self.max_bytes // 4:
            return
        while self._pages and (len(self._pages) >= self.max_pages or self._bytes + size > self.max_bytes):
            oldest = next(iter(self._pages))
            self._bytes -= len(self._pages.pop(oldest).body)
        self._pages[key] = page
        self._bytes += size
