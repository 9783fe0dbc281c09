"""A page of ``/resources`` asked again, answered from memory before the framework routes, parses and
authenticates the request anew: the ASGI application in front of the API application (``app.front``), so that
such a request costs little more than sending the bytes.

It answers only a ``GET /api/v1/resources`` with a bearer token, and only when everything it would otherwise
decide is already decided under the database's current change counters (read once, as any request does): the
token verified under the same ``access`` counter (``Authenticator.remembered``: not expired, verified less than a
minute ago), and the page that the full handler (``reading.resources``) served to that same identity for the
same query string under the same counters, which the handler keeps for it. So the answer is the one the handler
would give, bytes and headers alike; anything else (another scheme, an unknown or refused token, a query not
seen, a configured authorize program or CORS, a database error) goes on to the application unchanged.

On SQLite the counters are read in place, on the event loop: a read of two rows from a local file on a kept
connection (``database.versions.CounterReader``), which in WAL mode does not wait for writers, costs less than
handing it to a worker thread and back. On a database server, where a read is a network round trip, a worker
thread reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from nebctl.api.caching import Page
from nebctl.core.access import Identity

log = logging.getLogger(__name__)

PATH = "/api/v1/resources"


def repeat_key(query_string: bytes, who: Identity, access_version: int) -> Hashable:
    """The key of a page kept for exactly this request's query string, this identity and these rules."""
    return ("repeat", query_string, who.name, tuple(sorted(who.groups)), access_version)


class RepeatedPages:
    def __init__(self, app: ASGIApp, api: Any) -> None:
        """``api``: the FastAPI application, whose ``state`` holds the service, access control and the pages."""
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == PATH:
            page = await self._page(scope)
            if page is not None:
                await send({"type": "http.response.start", "status": 200, "headers": page.raw_headers})
                await send({"type": "http.response.body", "body": page.body})
                return
        await self.app(scope, receive, send)

    async def _page(self, scope: Scope) -> Page | None:
        state = self.api.state
        access = state.access
        if access.authorizer.settings.authorize_program is not None or state.settings.api.cors_origins:
            return None
        token = _bearer(scope)
        if token is None:
            return None
        store = state.service.store
        try:
            versions = store.change_versions() if store.local_reads else await run_in_threadpool(store.change_versions)
        except Exception:  # the application answers it, as it answers any database error
            return None
        who = access.authenticator.remembered(token, versions.access)
        if who is None:
            return None
        key = repeat_key(scope.get("query_string", b""), who, versions.access)
        page: Page | None = state.resource_pages.peek(versions.resources, key)
        return page


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None
