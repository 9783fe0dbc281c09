"""``POST /api/v1/plans``: the plan of posted manifests, as ``nebctl diff -o json`` prints it (docs/plan-json.md).

The body is either JSON, ``{"files": [{"name": "vms.yaml", "content": "..."}], "stack": ..., "prune": ...,
"targets": [...], "excludes": [...]}``, or the YAML itself (``Content-Type: application/yaml``, the stack in
``?stack=``). Nothing is applied. Invalid manifests give 422 with every error's file, line, column, resource and
message; a plan that cannot be made (a quota exceeded, a deletion still in use) gives 409 with its problems. The
caller needs ``diff`` on every resource of the manifests.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nebctl.api.v1.security import allow, identity, record
from nebctl.core.access import Action, Identity, Target
from nebctl.core.keys import ResourceKey, is_valid_name
from nebctl.schemas.diagnostics import ManifestError

router = APIRouter(tags=["plans"])
Who = Annotated[Identity, Depends(identity)]

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255, description="Shown in the errors' locations.")
    content: str = Field(description="The YAML text of the file.")


class PlanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: list[ManifestFile] = Field(min_length=1, max_length=10000)
    stack: str | None = Field(default=None, max_length=128, description="Default: the service's stack.")
    prune: bool = False
    targets: list[str] = Field(default_factory=list, max_length=10000)
    excludes: list[str] = Field(default_factory=list, max_length=10000)


def _keys(texts: list[str], what: str) -> frozenset[ResourceKey]:
    keys = set()
    for text in texts:
        try:
            keys.add(ResourceKey.parse(text))
        except ValueError as error:
            raise HTTPException(422, detail=f"{what} {text!r}: {error}") from None
    return frozenset(keys)


async def _body(request: Request, stack: str | None) -> PlanBody:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    try:
        if content_type in YAML_TYPES:
            return PlanBody(files=[ManifestFile(name="request.yaml", content=raw.decode("utf-8"))], stack=stack)
        body = PlanBody.model_validate_json(raw)
    except UnicodeDecodeError:
        raise HTTPException(422, detail="the body is not UTF-8") from None
    except ValidationError as error:
        problems = [
            {"location": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in error.errors(include_url=False, include_input=False)
        ]
        raise HTTPException(422, detail={"message": "the body is not a plan request", "problems": problems}) from None
    return body if stack is None or body.stack is not None else body.model_copy(update={"stack": stack})


def manifest_errors(error: ManifestError) -> list[dict[str, Any]]:
    return [
        {
            "file": d.location.file if d.location else None,
            "line": d.location.line if d.location else None,
            "column": d.location.column if d.location else None,
            "resource": d.subject,
            "message": d.message,
        }
        for d in error.diagnostics
    ]


@router.post("/plans", responses={422: {"description": "Invalid manifests"}, 409: {"description": "No plan"}})
async def plan(
    request: Request,
    who: Who,
    stack: Annotated[str | None, Query(max_length=128)] = None,
) -> Any:
    """The plan of the posted manifests against the recorded and the live state; nothing is changed."""
    from starlette.concurrency import run_in_threadpool

    body = await _body(request, stack)
    return await run_in_threadpool(_plan, request, who, body)


def _plan(request: Request, who: Identity, body: PlanBody) -> Any:
    from nebctl.controller.applying import PlanOptions
    from nebctl.controller.planning import PlanError
    from nebctl.database.errors import DatabaseError
    from nebctl.rendering import render_json
    from nebctl.schemas.loading import load_texts

    service = request.app.state.service
    stack = body.stack or service.stack
    if not is_valid_name(stack):
        raise HTTPException(422, detail=f"stack {stack!r}: not a valid name")
    try:
        manifests = load_texts([(f.name, f.content) for f in body.files])
    except ManifestError as error:
        count = len(error.diagnostics)
        return JSONResponse(
            {
                "detail": f"{count} problem{'s' if count != 1 else ''} in the manifests",
                "errors": manifest_errors(error),
            },
            status_code=422,
        )
    for key in manifests.documents:
        allow(request, who, Action.DIFF, Target(key.kind.short, key.namespace, key.name, stack))
    options = PlanOptions(
        stack=stack,
        prune=body.prune,
        targets=_keys(body.targets, "target"),
        excludes=_keys(body.excludes, "exclude"),
        user=who.name,
        groups=who.groups,
    )
    try:
        planned = service.controller.plan(dict(manifests.documents), options)
    except PlanError as error:
        return JSONResponse({"detail": "the plan cannot be made", "problems": error.problems}, status_code=409)
    except DatabaseError as error:
        raise HTTPException(503, detail=f"the database is not available: {error}") from None
    record(request, who, "api.plan", f"planned stack {stack}", stack=stack, changes=planned.plan.has_changes)
    return render_json(planned.plan)
