"""The FastAPI application of ``nebctl serve``: one router per concern, included here.

The running service is reached through ``request.app.state.service`` (a ``ServiceView``), set once at creation,
so routers stay plain functions of the request and tests can build the app around a real service.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import FastAPI

from nebctl import __version__


class MetricsView(Protocol):
    def render(self) -> bytes: ...


class ServiceView(Protocol):
    """What the HTTP layer needs of the running service."""

    @property
    def metrics(self) -> MetricsView: ...

    def ready(self) -> tuple[bool, dict[str, Any]]: ...


def create_app(service: ServiceView) -> FastAPI:
    from nebctl.api import health

    app = FastAPI(title="nebctl", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.include_router(health.router)
    return app
