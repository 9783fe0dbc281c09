"""``GET /api/v1/events``: the event log, a page at a time (``after`` an id, ``limit`` of them), or followed
with ``?follow=1`` as server-sent events (each with its id, so a client that reconnects with ``Last-Event-ID``
misses nothing). Only the events of what the caller may ``get`` are shown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from nebctl.api.v1.reading import json_response
from nebctl.api.v1.security import access_of, allow, identity
from nebctl.core.access import Action, Identity, Rule, Target, decide
from nebctl.database.records import EventRecord

router = APIRouter(tags=["events"])
Who = Annotated[Identity, Depends(identity)]

POLL = 0.5  # seconds between looks at the log while following
HEARTBEAT = 15.0  # seconds between comments that keep idle connections (and proxies) open


def _target(event: EventRecord) -> Target:
    kind = event.kind.short if event.kind is not None else None
    return Target(kind, event.namespace, event.name, event.stack)


def event_document(event: EventRecord) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": event.time.isoformat() if event.time else None,
        "type": event.type,
        "severity": event.severity,
        "resource": str(event.key) if event.key is not None else None,
        "stack": event.stack,
        "message": event.message,
        "data": event.data,
    }


def _shown(rules: Sequence[Rule], who: Identity, events: Sequence[EventRecord]) -> list[EventRecord]:
    return [e for e in events if decide(rules, who, Action.GET, _target(e)).allowed]


@router.get("/events")
async def events(
    request: Request,
    *,
    who: Who,
    after: Annotated[int | None, Query(ge=0, lt=2**62, description="Events after this id.")] = None,
    limit: Annotated[int | None, Query(ge=1, le=10000)] = None,
    stack: Annotated[str | None, Query(max_length=128)] = None,
    follow: Annotated[bool, Query(description="Stream new events as server-sent events.")] = False,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> Any:
    """Events in id order; ``next`` is the ``after`` of the next page."""
    store = request.app.state.service.store
    await run_in_threadpool(allow, request, who, Action.GET, Target(stack=stack))
    rules = await run_in_threadpool(access_of(request).authorizer.rules)
    page = limit or request.app.state.settings.api.events_page
    if not follow:
        found = await run_in_threadpool(
            store.list_events, after_id=after, stack=stack, limit=page, newest=after is None
        )
        shown = _shown(rules, who, found)
        return json_response({"events": [event_document(e) for e in shown], "next": found[-1].id if found else after})
    start = after
    if last_event_id is not None and last_event_id.isdigit():
        start = int(last_event_id)
    return StreamingResponse(
        _follow(request, who, rules, start, stack),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _follow(
    request: Request, who: Identity, rules: Sequence[Rule], after: int | None, stack: str | None
) -> AsyncIterator[bytes]:
    store = request.app.state.service.store
    if after is None:  # from now on: the newest event so far is the starting point
        newest = await run_in_threadpool(store.list_events, stack=stack, limit=1, newest=True)
        after = newest[-1].id if newest else 0
    idle = 0.0
    yield b": following the event log\n\n"
    while not await request.is_disconnected():
        found = await run_in_threadpool(store.list_events, after_id=after, stack=stack, limit=500)
        for event in _shown(rules, who, found):
            data = json.dumps(event_document(event), separators=(",", ":"))
            yield f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()
        if found:
            after = found[-1].id
            idle = 0.0
            continue
        await asyncio.sleep(POLL)
        idle += POLL
        if idle >= HEARTBEAT:
            idle = 0.0
            yield b": keep-alive\n\n"
