"""The read side of the API: stacks and their sync status, resources (filtered, each with its live status and
last actions), hosts, applies with their actions. Everything needs the ``get`` action; a listing holds only
what the rules let the caller see (the authorize program, when configured, is asked once for the listing).

The pages of ``/resources`` are kept encoded in memory (``api.caching``) by the database's change counters, the
query and the caller's visibility: a page asked again while nothing changed is bytes from memory. The 403 of a
listing denied as a whole (and the authorize program) is decided before the cache is looked at."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from nebctl.api.caching import Page, PageCache
from nebctl.api.v1.repeated import repeat_key
from nebctl.api.v1.security import access_of, allow, identity, rules_of, versions_of
from nebctl.core.access import Action, Effect, Identity, Rule, Target, applies_to, decide
from nebctl.core.keys import Kind, ResourceKey, parse_kind
from nebctl.database.records import ActionRecord, ApplyRecord, ResourceRecord
from nebctl.rendering.hosts import host_document
from nebctl.rendering.resources import observation_for, record_view

router = APIRouter(tags=["read"])
Who = Annotated[Identity, Depends(identity)]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _kind(text: str) -> Kind:
    try:
        return parse_kind(text)
    except ValueError as error:
        raise HTTPException(404, detail=str(error)) from None


def _target(record: ResourceRecord) -> Target:
    return Target(record.kind.short, record.namespace, record.name, record.stack)


def covers_all(request: Request, who: Identity, listing: Target) -> tuple[bool, Sequence[Rule]]:
    """Whether ``who`` may get everything of ``listing`` (an allow for every namespace and stack covers it and no
    deny of ``get`` applies to ``who``), with the rules read for it. Raises 403 when the listing as a whole is
    denied (the authorize program, when configured, is asked here, once)."""
    authorizer = access_of(request).authorizer
    rules = rules_of(request)
    decision = authorizer.authorize(who, Action.GET, listing, rules=rules)
    if not decision.allowed:
        raise HTTPException(403, detail=f"forbidden: {decision.reason}")
    wide = decide(rules, who, Action.GET, Target(listing.kind)).allowed
    return wide and not any(
        r.effect is Effect.DENY and applies_to(r, who) and Action.GET in r.actions for r in rules
    ), rules


def visible(request: Request, who: Identity, items: Iterable[Any], target_of: Any, listing: Target) -> list[Any]:
    """The items ``who`` may get: all of them when ``covers_all``, otherwise each as the rules decide it."""
    everything, rules = covers_all(request, who, listing)
    if everything:
        return list(items)
    return [item for item in items if decide(rules, who, Action.GET, target_of(item)).allowed]


@router.get("/stacks")
def stacks(request: Request, who: Who) -> list[dict[str, Any]]:
    """Every stack the service has synced: sync status, revision, last sync, problems."""
    store = request.app.state.service.store
    statuses = visible(request, who, store.list_stack_statuses(), lambda s: Target(stack=s.stack), Target())
    return [
        {
            "stack": s.stack,
            "sync_status": s.sync_status,
            "revision": s.revision,
            "source": s.source,
            "message": s.message,
            "problems": list(s.problems),
            "last_sync_at": _iso(s.last_sync_at),
            "last_sync_result": s.last_sync_result,
            "last_apply": s.last_apply_id,
            "sync_requested_at": _iso(s.sync_requested_at),
        }
        for s in statuses
    ]


def _labels(record: ResourceRecord) -> dict[str, Any]:
    metadata = (record.applied or record.desired or {}).get("metadata") or {}
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    return labels if isinstance(labels, dict) else {}


def _label_filter(selectors: Sequence[str]) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    for selector in selectors:
        key, sep, value = selector.partition("=")
        if not key or len(selector) > 317:
            raise HTTPException(422, detail=f"label {selector!r}: expected KEY or KEY=VALUE")
        pairs.append((key, value if sep else None))
    return pairs


@router.get("/resources", response_model=list[dict[str, Any]])
def resources(
    request: Request,
    *,
    who: Who,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    stack: Annotated[str | None, Query(max_length=128)] = None,
    label: Annotated[list[str] | None, Query(description="KEY or KEY=VALUE, repeatable")] = None,
    limit: Annotated[int, Query(ge=1, le=10000, description="Resources in this page.")] = 100,
    offset: Annotated[int, Query(ge=0, lt=2**31, description="Resources skipped (the previous pages).")] = 0,
) -> Response:
    """Resources, filtered by kind, namespace, stack and labels, a page at a time (ordered by kind, namespace and
    name; ``X-Total-Count`` says how many match, ``X-Next-Offset`` where the next page starts); each with its
    record and live status."""
    store = request.app.state.service.store
    kind_value = _kind(kind) if kind is not None else None
    selectors = _label_filter(label or [])
    listing = Target(kind_value.short if kind_value else None, namespace, None, stack)
    versions = versions_of(request)
    everything, rules = covers_all(request, who, listing)  # a 403 here, before any page is looked at

    def build() -> Page:
        if selectors:  # labels live in the specs: every matching record is read
            records = store.list_resources(stack=stack, kind=kind_value, namespace=namespace)
            records = [
                r
                for r in records
                if all(k in (labels := _labels(r)) and (v is None or str(labels[k]) == v) for k, v in selectors)
            ]
            if not everything:
                records = [r for r in records if decide(rules, who, Action.GET, _target(r)).allowed]
            total, page = len(records), records[offset : offset + limit]
        elif everything:  # the database makes the page
            total = store.count_resources(stack=stack, kind=kind_value, namespace=namespace)
            page = store.list_resources(stack=stack, kind=kind_value, namespace=namespace, limit=limit, offset=offset)
        else:  # the page is chosen from the keys the caller may see; only its records are read
            keys = [
                key
                for key, in_stack in store.list_resource_keys(stack=stack, kind=kind_value, namespace=namespace)
                if decide(rules, who, Action.GET, Target(key.kind.short, key.namespace, key.name, in_stack)).allowed
            ]
            total, page = len(keys), store.get_resources(keys[offset : offset + limit])
        headers = {"X-Total-Count": str(total)}
        if offset + limit < total:
            headers["X-Next-Offset"] = str(offset + limit)
        observations = store.list_observations() if page else {}
        return Page(encode([record_view(r, observation_for(r, observations)) for r in page]), headers)

    # Who sees everything sees the same page; anyone else's page is theirs, under the rules it was chosen by.
    visibility: tuple[Any, ...] = ("all",) if everything else (who.name, tuple(sorted(who.groups)), versions.access)
    query = (kind_value, namespace, stack, tuple(selectors), limit, offset)
    pages = _pages(request)
    page = pages.get(versions.resources, (query, visibility), build)
    # For the same query string by the same caller under the same counters, the middleware answers (repeated).
    pages.put(versions.resources, repeat_key(request.scope.get("query_string", b""), who, versions.access), page)
    return Response(page.body, media_type="application/json", headers=page.headers)


def _pages(request: Request) -> PageCache:
    pages: PageCache = request.app.state.resource_pages
    return pages


def encode(document: Any) -> bytes:
    """``document`` as JSON, encoded once by the standard library (FastAPI's generic encoder walks every value
    of a large listing again, for nothing: these documents are plain JSON already)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(document: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(encode(document), media_type="application/json", headers=headers)


def _action(action: ActionRecord) -> dict[str, Any]:
    return {
        "id": action.action_id,
        "resource": str(ResourceKey(action.kind, action.namespace, action.name)),
        "operation": action.operation,
        "family": action.family,
        "host": action.host,
        "state": action.state,
        "attempts": action.attempts,
        "error": action.error,
        "depends_on": list(action.depends_on),
        "started_at": _iso(action.started_at),
        "finished_at": _iso(action.finished_at),
    }


@router.get("/resources/{kind}/{name}")
def resource(
    request: Request,
    who: Who,
    kind: str,
    name: str,
    namespace: Annotated[str, Query(max_length=63)] = "default",
) -> dict[str, Any]:
    """One resource: its record, live status, health and last actions."""
    store = request.app.state.service.store
    key = ResourceKey.of(_kind(kind), name, namespace)
    record = store.get_resource(key) if len(name) <= 63 else None
    if record is None:
        # Whether it exists is itself information: a caller who may not get it learns nothing more.
        allow(request, who, Action.GET, Target(key.kind.short, key.namespace, key.name))
        raise HTTPException(404, detail=f"{key} not found")
    allow(request, who, Action.GET, _target(record))
    actions: list[ActionRecord] = []
    for apply in store.list_applies(stack=record.stack, limit=5):
        actions += [a for a in store.actions_of(apply.id) if (a.kind, a.namespace, a.name) == key]
        if len(actions) >= 20:
            break
    health = [h for h in store.list_resource_health(record.stack) if h.key == key]
    host = record.host or (record.applied or {}).get("host")
    rows = [store.get_observation(key)]
    if record.kind is Kind.VIRTUAL_MACHINE and host:
        rows.append(store.get_observation(ResourceKey(Kind.HOST, "default", str(host))))
    view = record_view(record, observation_for(record, {row.key: row for row in rows if row is not None}))
    view["health"] = (
        {"health": health[0].health, "message": health[0].message, "failures": health[0].failures} if health else None
    )
    view["last_actions"] = [_action(a) for a in actions[:20]]
    return view


@router.get("/hosts")
def hosts(request: Request, who: Who) -> list[dict[str, Any]]:
    """Hosts: state, capacity, allocation, usage, disk, labels, probe attributes."""
    from nebctl.controller.metrics import host_views

    store = request.app.state.service.store
    records = store.list_resources(kind=Kind.HOST)
    records = visible(request, who, records, _target, Target(Kind.HOST.short))
    views = host_views(store.list_resources(), store.latest_host_samples())
    names = {r.name for r in records}
    return [host_document(v) for v in views if v.name in names]


def _apply(apply: ApplyRecord) -> dict[str, Any]:
    return {
        "id": apply.id,
        "stack": apply.stack,
        "revision": apply.revision,
        "by": apply.holder,
        "state": apply.state,
        "started_at": _iso(apply.started_at),
        "finished_at": _iso(apply.finished_at),
        "summary": apply.summary,
    }


@router.get("/applies")
def applies(
    request: Request,
    who: Who,
    stack: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[dict[str, Any]]:
    """The latest applies, newest first."""
    store = request.app.state.service.store
    found = store.list_applies(stack=stack, limit=limit)
    return [_apply(a) for a in visible(request, who, found, lambda a: Target(stack=a.stack), Target(stack=stack))]


@router.get("/applies/{apply_id}")
def apply_detail(request: Request, who: Who, apply_id: int) -> dict[str, Any]:
    """One apply with every action: what, where, when, how it ended."""
    store = request.app.state.service.store
    found = store.get_apply(apply_id) if 0 < apply_id < 2**62 else None
    if found is None:
        allow(request, who, Action.GET, Target())
        raise HTTPException(404, detail=f"no apply {apply_id}")
    allow(request, who, Action.GET, Target(stack=found.stack))
    revision = store.apply_revision(apply_id)
    document = _apply(found)
    document["commit"] = (
        {"sha": revision.sha, "author": revision.author, "subject": revision.subject, "dirty": revision.dirty}
        if revision is not None
        else None
    )
    document["actions"] = [_action(a) for a in store.actions_of(apply_id)]
    return document
