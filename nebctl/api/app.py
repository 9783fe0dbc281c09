"""The FastAPI application of ``nebctl serve``: one router per concern, included here.

The running service is reached through ``request.app.state.service`` (a ``ServiceView``), set once at creation,
so routers stay plain functions of the request and tests can build the app around a real service. Access
control (``app.state.access``: the authenticator and the authorizer of ``controller.access``) is made here from
the service's store and settings; the dashboard uses the same objects. ``app.state.resource_pages`` keeps the
encoded pages of ``/resources`` (``api.caching``). ``front(app)`` is what the server runs: the application
behind the answerer of repeated pages (``v1.repeated``), which is outside the framework's own middleware.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request
from starlette.types import ASGIApp

from nebctl import __version__
from nebctl.controller.applying import Controller
from nebctl.core.settings import Settings
from nebctl.database.store import Store


class MetricsView(Protocol):
    def render(self) -> bytes: ...


class SourceView(Protocol):
    def describe(self) -> dict[str, Any]: ...


class ServiceView(Protocol):
    """What the HTTP layer needs of the running service."""

    @property
    def metrics(self) -> MetricsView: ...

    store: Store
    settings: Settings
    stack: str
    controller: Controller
    stopping: threading.Event

    @property
    def source(self) -> SourceView: ...

    def ready(self) -> tuple[bool, dict[str, Any]]: ...

    def trigger(self, reason: str) -> None: ...


def create_app(service: ServiceView) -> FastAPI:
    from starlette.middleware.cors import CORSMiddleware

    from nebctl.api import health, v1
    from nebctl.api.caching import PageCache
    from nebctl.api.v1 import limits, webhooks
    from nebctl.api.v1.security import Access, identity
    from nebctl.controller.access import Authenticator, Authorizer
    from nebctl.database.errors import DatabaseError

    settings = service.settings
    app = FastAPI(title="nebctl", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.state.settings = settings
    app.state.access = Access(
        authenticator=Authenticator(service.store, settings.access),
        authorizer=Authorizer(service.store, settings.access),
    )
    app.state.resource_pages = PageCache()
    secret_file = settings.api.webhook_secret_file
    app.state.webhook_secret = secret_file.read_bytes().strip() if secret_file is not None else None
    app.include_router(health.router)
    app.include_router(v1.router())

    @app.get(f"{v1.PREFIX}/openapi.json", include_in_schema=False, dependencies=[Depends(identity)])
    def openapi(request: Request) -> dict[str, Any]:
        return app.openapi()

    app.add_exception_handler(DatabaseError, limits.database_unavailable)
    app.add_exception_handler(Exception, limits.unexpected)
    webhook_path = v1.PREFIX + webhooks.PATH

    def limit_for(path: str) -> int:
        return settings.api.webhook_max_body if path == webhook_path else settings.api.max_body

    app.add_middleware(limits.BodyLimit, limit_for=limit_for)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


def front(app: FastAPI) -> ASGIApp:
    """``app`` behind the answerer of repeated ``/resources`` pages, which runs before any of the framework's
    layers (error pages, routing, dependencies): what ``api.server.HttpServer`` serves."""
    from nebctl.api.v1.repeated import RepeatedPages

    return RepeatedPages(app, api=app)
