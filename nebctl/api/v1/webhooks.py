"""``POST /api/v1/webhooks/git``: push notifications of GitHub, GitLab and Gitea.

The request is authenticated by the shared secret (``api.webhook_secret_file``), not by a token: GitHub's
``X-Hub-Signature-256`` and Gitea's ``X-Gitea-Signature`` are HMAC-SHA256 digests of the body, GitLab's
``X-Gitlab-Token`` is the secret itself; each is compared in constant time. The body is limited to
``api.webhook_max_body``. A push only makes the service fetch and sync the stack whose git repository and branch
it names: nothing of the payload is applied, and a push that matches no stack changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

PATH = "/webhooks/git"


def normalized_repository(url: str) -> str:
    """A repository's URL reduced to host/path, so that its https, ssh and scp-like forms compare equal:
    ``https://user@Example.com/a/b.git``, ``ssh://git@example.com:22/a/b`` and ``git@example.com:a/b.git`` all
    give ``example.com/a/b``. A file URL keeps its path."""
    text = url.strip()
    if "://" in text:
        rest = text.split("://", 1)[1]
        authority, _, path = rest.partition("/")
        host = authority.rsplit("@", 1)[-1].split(":", 1)[0]
    else:  # scp-like: [user@]host:path
        authority, _, path = text.partition(":")
        host = authority.rsplit("@", 1)[-1]
    path = path.strip("/").removesuffix(".git").rstrip("/")
    return f"{host.lower()}/{path.lower()}"


def payload_repositories(payload: dict[str, Any]) -> set[str]:
    """Every URL the payload gives for its repository (the forms differ between the three forges)."""
    urls: set[str] = set()
    for section in ("repository", "project"):
        part = payload.get(section)
        if isinstance(part, dict):
            for field in (
                "clone_url",
                "ssh_url",
                "git_url",
                "html_url",
                "url",
                "git_http_url",
                "git_ssh_url",
                "web_url",
            ):
                value = part.get(field)
                if isinstance(value, str) and value:
                    urls.add(normalized_repository(value))
    return urls


def signature_ok(headers: Any, body: bytes, secret: bytes) -> str | None:
    """The forge whose signature checks, or None."""
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    github = headers.get("x-hub-signature-256")
    if github is not None:
        return "github" if hmac.compare_digest(github.strip().encode(), f"sha256={digest}".encode()) else None
    gitea = headers.get("x-gitea-signature") or headers.get("x-gogs-signature")
    if gitea is not None:
        return "gitea" if hmac.compare_digest(gitea.strip().encode(), digest.encode()) else None
    gitlab = headers.get("x-gitlab-token")
    if gitlab is not None:
        return "gitlab" if hmac.compare_digest(gitlab.encode(), secret) else None
    return None


@router.post(PATH, status_code=202, responses={401: {"description": "Bad or missing signature"}})
async def git_push(request: Request) -> Any:
    """A push: fetch and sync the stack whose repository and branch it names."""
    secret: bytes | None = request.app.state.webhook_secret
    if secret is None:
        raise HTTPException(404, detail="webhooks are not configured (api.webhook_secret_file)")
    body = await request.body()  # the size limit is enforced while it is received (limits.BodyLimit)
    forge = signature_ok(request.headers, body, secret)
    if forge is None:
        raise HTTPException(401, detail="the signature does not match")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(422, detail="the body is not JSON") from None
    if not isinstance(payload, dict):
        raise HTTPException(422, detail="the body is not a JSON object")
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return JSONResponse({"synced": [], "message": "not a branch push: nothing to do"}, status_code=200)
    branch = ref.removeprefix("refs/heads/")
    return await run_in_threadpool(_sync_matching, request, forge, branch, payload_repositories(payload))


def _sync_matching(request: Request, forge: str, branch: str, repositories: set[str]) -> Any:
    service = request.app.state.service
    source = service.source.describe()
    matches = (
        source.get("type") == "git"
        and isinstance(source.get("url"), str)
        and normalized_repository(source["url"]) in repositories
        and source.get("branch") == branch
    )
    if not matches:
        return JSONResponse({"synced": [], "message": "no stack follows this repository and branch"}, status_code=200)
    stack = service.stack
    service.store.request_sync(stack)
    service.trigger(f"webhook: push to {branch}")
    address = request.client.host if request.client else None
    service.store.add_event(
        type="api.webhook",
        message=f"webhook:{forge}: push to {branch}: sync of stack {stack} requested",
        stack=stack,
        data={"user": f"webhook:{forge}", "address": address, "branch": branch},
    )
    return {"synced": [stack]}
