"""The dashboard's routes, added to the FastAPI application of ``nebctl serve`` by ``mount``.

Every page needs a signed-in user allowed ``get``; the forms (sync now, the self-heal switch, sign out) need
their action too (``apply``, ``admin``) and the session's CSRF token, and are refused (403) without either,
whether or not the page showed the button. Pages are Jinja2 templates rendered here; the live parts are htmx
fragments the pages reload (the stack's status, a running apply's timeline) and the event stream
(``/events/stream``, server-sent events) that the events page and the overview listen to.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from nebctl import __version__
from nebctl.controller.planning import PlanError
from nebctl.dashboard import views
from nebctl.dashboard.identity import AuthenticationError, Authority, Principal, Target
from nebctl.dashboard.sessions import COOKIE, CSRF_FIELD, CSRF_HEADER, LOGIN_COOKIE, Session, SessionKeys
from nebctl.database.errors import DatabaseError
from nebctl.database.records import EventRecord

HERE = Path(__file__).parent
STREAM_POLL = 0.2  # seconds between two looks at the event log for the stream
KEEPALIVE = 15.0  # seconds of silence before the stream sends a comment (proxies close idle connections)


class DeniedError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Dashboard:
    def __init__(self, service: views.DashboardService, authority: Authority, keys: SessionKeys | None = None) -> None:
        self.service = service
        self.authority = authority
        self.keys = keys or SessionKeys()
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), auto_reload=False
        )
        self.templates.globals.update(version=__version__)

    # --- sessions -----------------------------------------------------------------------------------------------

    def session(self, request: Request) -> tuple[Session, Principal] | None:
        session = self.keys.read(request.cookies.get(COOKIE))
        if session is None:
            return None
        try:
            identity = self.authority.identity(session.user)
        except DatabaseError:
            return None
        return (session, Principal(identity, self.authority)) if identity is not None else None

    def require(
        self, request: Request, action: str | None = None, target: Target | None = None
    ) -> tuple[Session, Principal]:
        """The signed-in user (401 without one), allowed ``action`` on ``target`` when one is given (else 403)."""
        found = self.session(request)
        if found is None:
            raise DeniedError(401, "sign in first")
        if action is not None:
            check(found[1], action, target or Target())
        return found

    async def form(self, request: Request, session: Session) -> dict[str, str]:
        """The posted form's fields, once its CSRF token is checked (a header serves htmx requests)."""
        body = (await request.body()).decode("utf-8", errors="replace")
        fields = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        token = fields.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not self.keys.csrf_ok(session, token):
            raise DeniedError(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        return fields

    # --- rendering ----------------------------------------------------------------------------------------------

    def page(
        self, request: Request, template: str, found: tuple[Session, Principal] | None, **context: Any
    ) -> HTMLResponse:
        session, user = found if found else (None, None)
        try:
            banner = views.banner(self.service)
        except DatabaseError as error:
            banner = [f"The database does not answer: {error}"]
        html = self.templates.get_template(template).render(
            request=request,
            user=user,
            csrf=self.keys.csrf_token(session) if session else "",
            banner=banner,
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html)

    def fragment(self, template: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.templates.get_template(template).render(**context))


def check(user: Principal, action: str, target: Target) -> None:
    if not user.may(action, target):
        raise DeniedError(403, f"{user.name} may not {action} {target}")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def mount(app: FastAPI, service: views.DashboardService, authority: Authority) -> Dashboard:  # noqa: PLR0915
    """Add the dashboard's pages, forms, event stream and assets to ``app``."""
    board = Dashboard(service, authority)
    app.state.dashboard = board
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")

    @app.exception_handler(DeniedError)
    async def denied(request: Request, error: DeniedError) -> Response:
        if error.status == 401 and request.method == "GET" and "hx-request" not in request.headers:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        found = board.session(request)
        response = board.page(request, "error.html", found, status=error.status, message=error.message)
        response.status_code = error.status
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/", failed: int = 0, wait: float = 0.0) -> Response:
        nonce = secrets.token_urlsafe(18)
        response = board.page(
            request,
            "login.html",
            None,
            next=next if next.startswith("/") and not next.startswith("//") else "/",
            failed=bool(failed),
            wait=wait,
            login_token=board.keys.login_token(nonce),
        )
        response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", secure=_secure(request))
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", errors="replace")
        fields = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if not board.keys.login_ok(request.cookies.get(LOGIN_COOKIE), fields.get(CSRF_FIELD)):
            raise DeniedError(403, "the sign-in form's CSRF token is missing or wrong: reload the page and try again")
        target = fields.get("next", "/")
        target = target if target.startswith("/") and not target.startswith("//") else "/"
        address = request.client.host if request.client else None
        try:
            identity = await asyncio.to_thread(
                board.authority.authenticate, fields.get("username", ""), fields.get("password", ""), address=address
            )
        except AuthenticationError as error:
            wait = f"&wait={error.retry_after:.1f}" if error.retry_after else ""
            return RedirectResponse(f"/login?failed=1{wait}&next={quote(target)}", status_code=303)
        cookie, _ = board.keys.issue(identity.name)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(board.keys.ttl),
            httponly=True,
            samesite="lax",
            secure=_secure(request),
        )
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session, _ = board.require(request)
        await board.form(request, session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    def overview_page(request: Request) -> Response:
        found = board.require(request)
        return board.page(request, "overview.html", found, **views.overview(service, _stacks_of(found[1])))

    def _stacks_of(user: Principal) -> Callable[[str], bool]:
        return lambda stack: user.may("get", Target(stack=stack))

    @app.get("/fragments/stacks", response_class=HTMLResponse)
    def stacks_fragment(request: Request) -> Response:
        _, user = board.require(request)
        return board.fragment("_stacks.html", **views.overview(service, _stacks_of(user)))

    @app.get("/stacks/{name}", response_class=HTMLResponse)
    def stack_page(request: Request, name: str, all: int = 0) -> Response:
        target = Target(stack=name)
        found = board.require(request, "get", target)
        context = views.stack(service, name, show_all=bool(all))
        if context is None:
            raise DeniedError(404, f"no stack {name}")
        user = found[1]
        return board.page(
            request,
            "stack.html",
            found,
            can_sync=user.may("apply", target),
            can_admin=user.may("admin", target),
            can_diff=user.may("diff", target),
            **context,
        )

    @app.get("/stacks/{name}/status", response_class=HTMLResponse)
    def stack_status_fragment(request: Request, name: str) -> Response:
        board.require(request, "get", Target(stack=name))
        rows = [row for row in views.overview(service, lambda stack: stack == name)["stacks"]]
        return board.fragment("_stack_status.html", row=rows[0] if rows else None)

    @app.get("/stacks/{name}/plan", response_class=HTMLResponse)
    async def plan_fragment(request: Request, name: str) -> Response:
        board.require(request, "diff", Target(stack=name))
        if name != service.stack:
            return board.fragment("_plan.html", lines=[], problems=[f"stack {name} is not served by this process"])
        try:
            plan = await asyncio.to_thread(service.pending_plan)
        except PlanError as error:
            return board.fragment("_plan.html", lines=[], problems=error.problems)
        return board.fragment("_plan.html", lines=views.plan_lines(plan), problems=[])

    @app.post("/stacks/{name}/sync")
    async def sync_now(request: Request, name: str) -> Response:
        session, _ = board.require(request, "apply", Target(stack=name))
        await board.form(request, session)
        if name != service.stack:
            raise DeniedError(404, f"stack {name} is not served by this process")
        await asyncio.to_thread(service.store.request_sync, name)
        return RedirectResponse(f"/stacks/{name}?requested=1", status_code=303)

    @app.post("/stacks/{name}/mode")
    async def set_mode(request: Request, name: str) -> Response:
        session, user = board.require(request, "admin", Target(stack=name))
        fields = await board.form(request, session)
        if name != service.stack:
            raise DeniedError(404, f"stack {name} is not served by this process")
        mode = fields.get("mode")
        if mode not in ("self-heal", "report-only"):
            raise DeniedError(400, f"mode: expected self-heal or report-only, not {mode!r}")
        await asyncio.to_thread(service.set_self_heal, mode == "self-heal", by=user.name)
        return RedirectResponse(f"/stacks/{name}", status_code=303)

    @app.get("/hosts", response_class=HTMLResponse)
    def hosts_page(request: Request, hours: float = 6.0) -> Response:
        found = board.require(request, "get", Target(kind="host"))
        return board.page(request, "hosts.html", found, **views.hosts(service.store, hours=hours))

    @app.get("/vms/{namespace}/{name}", response_class=HTMLResponse)
    def vm_page(request: Request, namespace: str, name: str) -> Response:
        found = board.require(request)
        context = views.vm(service.store, namespace, name)
        if not context:
            raise DeniedError(404, f"no VM {namespace}/{name}")
        check(found[1], "get", Target(kind="vm", namespace=namespace, name=name, stack=context["record"].stack))
        return board.page(request, "vm.html", found, **context)

    @app.get("/applies/{apply_id}", response_class=HTMLResponse)
    def apply_page(request: Request, apply_id: int, page: int = 1) -> Response:
        found = board.require(request)
        context = views.apply(service.store, apply_id, page=page)
        if context is None:
            raise DeniedError(404, f"no apply {apply_id}")
        check(found[1], "get", Target(stack=context["stack"]))
        return board.page(request, "apply.html", found, **context)

    @app.get("/applies/{apply_id}/timeline", response_class=HTMLResponse)
    def timeline_fragment(request: Request, apply_id: int, page: int = 1) -> Response:
        _, user = board.require(request)
        context = views.apply(service.store, apply_id, page=page)
        if context is None:
            raise DeniedError(404, f"no apply {apply_id}")
        check(user, "get", Target(stack=context["stack"]))
        return board.fragment("_timeline.html", **context)

    def _filter(request: Request) -> views.EventFilter:
        q = request.query_params
        return views.EventFilter(
            stack=q.get("stack") or None,
            severity=q.get("severity") or None,
            type=q.get("type") or None,
            resource=q.get("resource") or None,
        )

    @app.get("/events", response_class=HTMLResponse)
    def events_page(request: Request) -> Response:
        found = board.require(request)
        selection = _filter(request)
        context = views.events(service.store, selection, visible=_visible(found[1]))
        return board.page(request, "events.html", found, **context)

    def _visible(user: Principal) -> Callable[[EventRecord], bool]:
        """Whether ``user`` may see an event: ``get`` on its stack (the service's own events have none)."""
        return lambda event: user.may("get", Target(stack=event.stack))

    @app.get("/events/stream")
    async def event_stream(request: Request, after: int = -1) -> Response:
        _, user = board.require(request)
        selection = _filter(request)
        visible = _visible(user)
        resumed = request.headers.get("last-event-id", "")
        after = int(resumed) if resumed.isdigit() else after  # a reconnecting browser says where it stopped
        row = board.templates.get_template("_event_row.html")

        async def stream() -> AsyncIterator[str]:
            last = after
            if last < 0:  # from now on
                newest = await asyncio.to_thread(service.store.list_events, limit=1, newest=True)
                last = (newest[0].id or 0) if newest else 0
            quiet = 0.0
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                try:
                    found = await asyncio.to_thread(service.store.list_events, after_id=last, limit=500)
                except DatabaseError:
                    found = []
                for event in found:
                    last = max(last, event.id or last)
                    if not selection.matches(event) or not visible(event):
                        continue
                    html = row.render(event=views.event_row(event)).replace("\n", "")
                    yield f"id: {event.id}\nevent: event\ndata: {html}\n\n"
                    quiet = 0.0
                if found:
                    yield "event: changed\ndata: changed\n\n"  # the overview reloads its table on this
                quiet += STREAM_POLL
                if quiet >= KEEPALIVE:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(STREAM_POLL)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    return board
