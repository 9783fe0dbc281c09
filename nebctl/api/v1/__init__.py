"""The JSON API of ``nebctl serve``, under ``/api/v1`` (docs/api.md; OpenAPI at ``/api/v1/openapi.json``).

``security`` authenticates every request (bearer token or user and password, through
``controller.access``) and checks the access rules for every call; the other modules are one router each:
``reading`` (stacks, resources, hosts, applies), ``events`` (paged, and followed as server-sent events),
``planning`` (plans of posted manifests), ``acting`` (login, syncs), ``webhooks`` (git pushes). ``limits``
bounds request bodies and turns every unexpected error into a plain JSON 500 without a traceback.
"""

from __future__ import annotations

from fastapi import APIRouter

PREFIX = "/api/v1"


def router() -> APIRouter:
    from nebctl.api.v1 import acting, events, planning, reading, webhooks

    api = APIRouter(prefix=PREFIX)
    for module in (reading, events, planning, acting, webhooks):
        api.include_router(module.router)
    return api
