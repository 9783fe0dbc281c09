"""The dashboard's browser sessions and CSRF tokens: a signed cookie naming the user, and a per-session token
that every form carries back.

The cookie holds the user's name, an expiry and a random session id, signed with HMAC-SHA256 under a key the
process draws at start (``SessionKeys``), so a restart signs everyone out and nothing about sessions is stored.
The CSRF token is the HMAC of the session id under a second key: a page from another site cannot read it, so a
forged form cannot carry it; a request whose token does not match its cookie's session is refused. The user is
looked up again on every request, so disabling a user or changing their rules takes effect at once.

Used by ``dashboard.app`` (the routes) only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "nebctl_session"
LOGIN_COOKIE = "nebctl_login"  # a random nonce that binds the login form's CSRF token before any session exists
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
DEFAULT_TTL = 12 * 3600.0


@dataclass(frozen=True)
class Session:
    user: str
    session_id: str
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionKeys:
    """Signs and checks session cookies and CSRF tokens with keys drawn when the process starts."""

    def __init__(self, *, ttl: float = DEFAULT_TTL) -> None:
        self._cookie_key = secrets.token_bytes(32)
        self._csrf_key = secrets.token_bytes(32)
        self.ttl = ttl

    def issue(self, user: str) -> tuple[str, Session]:
        """A new session of ``user``: the cookie's value and the session."""
        session = Session(user=user, session_id=secrets.token_urlsafe(18), expires=time.time() + self.ttl)
        body = _b64(json.dumps({"u": session.user, "s": session.session_id, "e": session.expires}).encode())
        return f"{body}.{self._sign(body)}", session

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie; None when it is missing, forged, malformed or expired."""
        if not cookie or "." not in cookie:
            return None
        body, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(_unb64(body))
            session = Session(user=str(data["u"]), session_id=str(data["s"]), expires=float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > time.time() else None

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))

    def login_token(self, nonce: str) -> str:
        """The login form's CSRF token: bound to the ``LOGIN_COOKIE`` nonce the form was served with."""
        return hmac.new(self._csrf_key, b"login:" + nonce.encode(), hashlib.sha256).hexdigest()

    def login_ok(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce) and bool(token) and hmac.compare_digest(str(token), self.login_token(str(nonce)))

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._cookie_key, body.encode(), hashlib.sha256).digest())
