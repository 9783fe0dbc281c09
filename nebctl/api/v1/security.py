"""Who is calling, and may they: FastAPI dependencies used by every router of the API.

``identity(request)`` reads ``Authorization: Bearer TOKEN`` or ``Authorization: Basic`` (user and password)
and asks the ``Authenticator`` of the application; every failure is the same 401 (or 429 with
``Retry-After`` while failed logins are being slowed), so that no answer tells whether a user exists.
``allow(request, identity, action, target)`` asks the ``Authorizer`` and answers 403 with the reason when
denied. ``record(...)`` writes the event of a mutating call, with the identity and never a secret.

Every authenticated request first reads the database's change counters (``Store.change_versions``: one small
query), keeps them as ``request.state.versions`` (``versions_of``), and hands the ``access`` counter to the
authenticator and the authorizer: a token verified, or the rules read, under the same counter are reused from
memory, and any change to users, tokens or rules, by any process sharing the database, counts from the next
request on. The resource pages are cached by the same counters (``reading``).
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from nebctl.controller.access import (
    AuthenticationError,
    Authenticator,
    Authorizer,
    Credentials,
    Identity,
    PasswordCredentials,
    Target,
    TokenCredentials,
)
from nebctl.core.access import Decision, Rule
from nebctl.database.versions import Versions

log = logging.getLogger(__name__)

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="nebctl", Basic realm="nebctl", charset="UTF-8"'}


@dataclass
class Access:
    """What the application keeps for access control (``app.state.access``)."""

    authenticator: Authenticator
    authorizer: Authorizer


def access_of(request: Request) -> Access:
    access: Access = request.app.state.access
    return access


def client_address(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def credentials_of(request: Request) -> Credentials | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return TokenCredentials(value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return PasswordCredentials("", "")
        user, _, password = decoded.partition(":")
        return PasswordCredentials(user, password)
    return PasswordCredentials("", "")  # an unknown scheme fails like bad credentials


def failure(error: AuthenticationError) -> HTTPException:
    if error.retry_after is not None:
        seconds = max(1, int(error.retry_after + 0.999))
        return HTTPException(429, detail=str(error), headers={"Retry-After": str(seconds)})
    return HTTPException(401, detail=str(error), headers=UNAUTHORIZED_HEADERS)


async def identity(request: Request) -> Identity:
    """The dependency of every authenticated route."""
    credentials = credentials_of(request)
    if credentials is None:
        raise HTTPException(401, detail="authentication required", headers=UNAUTHORIZED_HEADERS)
    authenticator = access_of(request).authenticator
    store = request.app.state.service.store
    address = client_address(request)

    def authenticate() -> Identity:
        # The counters first: whatever is read after them is at least as new as they say.
        versions: Versions = store.change_versions()
        request.state.versions = versions
        return authenticator.authenticate(credentials, address=address, access_version=versions.access)

    try:
        who: Identity = await run_in_threadpool(authenticate)
    except AuthenticationError as error:
        raise failure(error) from None
    request.state.identity = who
    return who


def versions_of(request: Request) -> Versions:
    """The change counters read by ``identity`` for this request."""
    versions: Versions = request.state.versions
    return versions


def rules_of(request: Request) -> list[Rule]:
    """The access rules, as of this request's counters."""
    return access_of(request).authorizer.rules(versions_of(request).access)


def decide(request: Request, who: Identity, action: str, target: Target) -> Decision:
    return access_of(request).authorizer.authorize(who, action, target, rules=rules_of(request))


def allow(request: Request, who: Identity, action: str, target: Target) -> None:
    """Raise 403 unless ``who`` may do ``action`` on ``target``."""
    decision = decide(request, who, action, target)
    if not decision.allowed:
        raise HTTPException(403, detail=f"forbidden: {decision.reason}")


def record(request: Request, who: Identity, type: str, message: str, **data: Any) -> None:
    """The event of a mutating call: who, from where, what (no secret is ever passed here)."""
    store = request.app.state.service.store
    details = {"user": who.name, "driver": who.driver, "address": client_address(request), **data}
    try:
        store.add_event(type=type, message=f"{who.name}: {message}", stack=data.get("stack"), data=details)
    except Exception:  # the call was made; failing to record it is logged, not turned into an error
        log.exception("could not record the event %s", type)
