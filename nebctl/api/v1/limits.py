"""Bounds on what a request may cost: an ASGI middleware refusing bodies larger than the configured limit
(413, as soon as the announced length or the bytes received pass it, before a handler sees them), and a
handler turning any unexpected error into a plain JSON 500 that names no file, line or value."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class TooLarge(HTTPException):
    """Raised by the body's reader: an HTTP error, so that FastAPI passes it through as the 413 it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"the request body is larger than {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await _too_large(send, limit)
                return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge(limit)
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, sending)
        except TooLarge:
            if not started:
                await _too_large(send, limit)


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"the request body is larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("%s %s failed: %s", request.method, request.url.path, type(error).__name__, exc_info=error)
    return JSONResponse({"detail": "internal error (logged by the server)"}, status_code=500)


def database_unavailable(request: Request, error: Any) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, error)
    return JSONResponse({"detail": "the database is not available"}, status_code=503)
