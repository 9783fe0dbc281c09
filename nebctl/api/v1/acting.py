"""The calls that change something: ``POST /api/v1/login`` (a password for a token, shown once),
``POST /api/v1/logout`` (revokes the token used), ``POST /api/v1/syncs`` (sync a stack now: the running service
takes the request within its poll interval), and ``GET /api/v1/whoami``. Each change is an event with the
identity; no response or event carries a password, and only login's response carries a token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from nebctl.api.v1.security import access_of, allow, client_address, failure, identity, record
from nebctl.controller.access import AuthenticationError
from nebctl.core.access import Action, Identity, Target

router = APIRouter(tags=["actions"])
Who = Annotated[Identity, Depends(identity)]


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=4096)
    token_name: str = Field(default="login", min_length=1, max_length=128)


class SyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stack: str | None = Field(default=None, max_length=128, description="Default: the service's stack.")


@router.post("/login")
async def login(request: Request, body: LoginBody) -> dict[str, Any]:
    """Exchange a user's password for a bearer token (shown in this response only)."""
    authenticator = access_of(request).authenticator
    try:
        secret, token, who = await run_in_threadpool(
            authenticator.login, body.user, body.password, address=client_address(request), name=body.token_name
        )
    except AuthenticationError as error:
        raise failure(error) from None
    await run_in_threadpool(record, request, who, "api.login", "logged in", token=token.id)
    return {
        "token": secret,
        "token_id": token.id,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "user": who.name,
        "groups": list(who.groups),
    }


@router.post("/logout")
def logout(request: Request, who: Who) -> dict[str, Any]:
    """Revoke the bearer token of this request."""
    credentials = request.headers.get("authorization", "")
    scheme, _, value = credentials.partition(" ")
    if scheme.lower() != "bearer":
        raise HTTPException(400, detail="logout revokes a bearer token: this request used none")
    store = request.app.state.service.store
    token = store.verify_token(value.strip())
    if token is None:  # revoked meanwhile
        raise failure(AuthenticationError())
    store.revoke_token(token.id)
    record(request, who, "api.logout", "logged out", token=token.id)
    return {"revoked": token.id}


@router.get("/whoami")
def whoami(who: Who) -> dict[str, Any]:
    """The identity this request was authenticated as."""
    return {"user": who.name, "groups": list(who.groups), "driver": who.driver}


@router.post("/syncs", status_code=202)
def sync(request: Request, who: Who, body: SyncBody | None = None) -> dict[str, Any]:
    """Ask the service to sync a stack now (fetching a git source first). Needs ``apply`` on the stack."""
    service = request.app.state.service
    stack = (body.stack if body else None) or service.stack
    allow(request, who, Action.APPLY, Target(stack=stack))
    if stack != service.stack:
        raise HTTPException(404, detail=f"this service reconciles stack {service.stack}, not {stack}")
    requested = service.store.request_sync(stack)
    service.trigger("api: sync requested")
    record(request, who, "api.sync", f"requested a sync of stack {stack}", stack=stack)
    return {"stack": stack, "requested_at": requested.isoformat()}
