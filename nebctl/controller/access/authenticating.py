"""Authentication: credentials (a password, or a bearer token) to an ``Identity``, or ``AuthenticationError``.

A user record names its driver: ``builtin`` checks the argon2id hash kept in the database (and rehashes it when
the configured cost changed); ``exec`` asks the configured external program. With ``exec_unknown_users``, a
name without a record logs in through the program too, and gets a record (driver ``exec``, the program's
groups, refreshed at each login) so that it can own tokens. Every failure says the same thing, costs about the
same time (an unknown user is verified against a decoy hash) and counts toward the throttle of the name and of
the client's address. Used by the API, the dashboard and ``nebctl token``.

A caller that read the database's ``access`` change counter (``Store.change_versions``) before asking may pass it:
a token verified under that same counter, less than ``TOKEN_REUSE`` seconds ago, is then taken from memory (by
the SHA-256 digest of the token, never the token itself) instead of two queries. Revoking a token, deleting or
disabling a user, or changing a user's groups raises the counter, so the next request that reads it verifies
again; a token's expiry is checked at every use. The API reads the counter at every request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from nebctl.controller.access import programs
from nebctl.controller.access.passwords import PasswordHasher
from nebctl.controller.access.throttling import LoginThrottle
from nebctl.core.access import Identity
from nebctl.core.settings import AccessSettings
from nebctl.database.access import TOKEN_PREFIX, token_digest
from nebctl.database.errors import DatabaseError
from nebctl.database.records import TokenRecord, UserRecord
from nebctl.database.store import Store

log = logging.getLogger(__name__)

FAILED = "authentication failed"
DRIVERS = ("builtin", "exec")
# Seconds a token's verification is reused while the access counter stays the same: bounds the memory's life and
# keeps the token's last use (written by a verification, to the minute) about that accurate.
TOKEN_REUSE = 60.0
TOKENS_KEPT = 4096  # verifications kept at most (the oldest is dropped first)


@dataclass(frozen=True)
class PasswordCredentials:
    user: str
    password: str

    def __repr__(self) -> str:  # never the password, even in a traceback's locals
        return f"PasswordCredentials(user={self.user!r})"


@dataclass(frozen=True)
class TokenCredentials:
    token: str

    def __repr__(self) -> str:
        return "TokenCredentials(***)"


Credentials = PasswordCredentials | TokenCredentials


class AuthenticationError(Exception):
    """The one answer to bad credentials, unknown users, disabled users and failing programs alike.
    ``retry_after`` is set when the attempt was refused by the throttle, without being checked."""

    def __init__(self, retry_after: float | None = None) -> None:
        message = FAILED if retry_after is None else f"too many failed logins: retry in {retry_after:.1f}s"
        super().__init__(message)
        self.retry_after = retry_after


def identity_of(user: UserRecord) -> Identity:
    return Identity(user.name, user.groups, user.driver)


@dataclass(frozen=True)
class _Verified:
    """A token's verification: who it is, under which access counter, until when it may be reused."""

    identity: Identity
    access: int
    expires_at: datetime | None
    reuse_until: float  # time.monotonic()


class Authenticator:
    def __init__(
        self,
        store: Store,
        settings: AccessSettings | None = None,
        *,
        hasher: PasswordHasher | None = None,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or AccessSettings()
        self.hasher = hasher or PasswordHasher(self.settings.passwords)
        s = self.settings
        self.throttle = throttle or LoginThrottle(
            free=s.login_free_failures, delay=s.login_delay, max_delay=s.login_max_delay, window=s.login_window
        )
        self._verified: dict[str, _Verified] = {}  # by the token's digest
        self._verified_lock = threading.Lock()

    def authenticate(
        self, credentials: Credentials, *, address: str | None = None, access_version: int | None = None
    ) -> Identity:
        """``access_version``: the ``access`` change counter, read before this call (see the module's doc)."""
        if isinstance(credentials, TokenCredentials):
            if access_version is None:
                return self._token(credentials.token)
            return self._token_reused(credentials.token, access_version)
        return self._password(credentials.user, credentials.password, address)

    def login(
        self,
        user: str,
        password: str,
        *,
        address: str | None = None,
        name: str = "login",
        lifetime: float | None = None,
    ) -> tuple[str, TokenRecord, Identity]:
        """Check a password and issue a token (the secret, shown once, and its record)."""
        identity = self._password(user, password, address)
        lifetime = self.settings.token_lifetime if lifetime is None else lifetime
        expires = self.store.now() + timedelta(seconds=lifetime)
        secret, record = self.store.create_token(identity.name, name=name, expires_at=expires)
        return secret, record, identity

    def issue_token(self, user: str, *, name: str, expires_at: datetime | None) -> tuple[str, TokenRecord]:
        return self.store.create_token(user, name=name, expires_at=expires_at)

    # --- the drivers -------------------------------------------------------------------------------------------

    def _token(self, secret: str) -> Identity:
        return self._verify_token(secret)[0]

    def _verify_token(self, secret: str) -> tuple[Identity, TokenRecord]:
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            raise AuthenticationError()
        record = self.store.verify_token(secret)
        if record is None:
            raise AuthenticationError()
        user = self.store.get_user(record.user)
        if user is None or not user.enabled:
            raise AuthenticationError()
        return identity_of(user), record

    def remembered(self, secret: str, access_version: int) -> Identity | None:
        """Who the token ``secret`` was verified to be under the counter ``access_version``, if that is still
        in memory and may be reused (not expired, verified less than ``TOKEN_REUSE`` s ago); never a query."""
        found = self._verified.get(token_digest(secret))
        if (
            found is not None
            and found.access == access_version
            and time.monotonic() < found.reuse_until
            and (found.expires_at is None or self.store.now() < found.expires_at)
        ):
            return found.identity
        return None

    def _token_reused(self, secret: str, access_version: int) -> Identity:
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            raise AuthenticationError()
        found = self.remembered(secret, access_version)
        if found is not None:
            return found
        digest = token_digest(secret)
        # Failures are not kept: a token refused now may be valid once created, and refusals cost no more.
        identity, record = self._verify_token(secret)
        verified = _Verified(identity, access_version, record.expires_at, time.monotonic() + TOKEN_REUSE)
        with self._verified_lock:
            self._verified.pop(digest, None)
            while len(self._verified) >= TOKENS_KEPT:
                del self._verified[next(iter(self._verified))]
            self._verified[digest] = verified
        return identity

    def _password(self, name: str, password: str, address: str | None) -> Identity:
        wait = self.throttle.retry_after(name, address)
        if wait > 0:
            raise AuthenticationError(retry_after=wait)
        identity = self._check_password(name, password)
        if identity is None:
            self.throttle.failed(name, address)
            log.info("failed login for %r from %s", name[:128], address or "?")
            raise AuthenticationError()
        self.throttle.succeeded(name)
        return identity

    def _check_password(self, name: str, password: str) -> Identity | None:
        if not name or len(name) > 128 or not password or len(password) > 4096:
            self.hasher.verify(None, password[:4096])  # the same cost as any other failure
            return None
        user = self.store.get_user(name)
        driver = user.driver if user is not None else ("exec" if self.settings.exec_unknown_users else "builtin")
        if user is not None and not user.enabled:
            self.hasher.verify(None, password)
            return None
        if driver == "exec":
            return self._exec(name, password, user)
        ok = self.hasher.verify(user.password_hash if user is not None else None, password)
        if not ok or user is None:
            return None
        if user.password_hash is not None and self.hasher.needs_rehash(user.password_hash):
            try:
                self.store.update_user(user.name, password_hash=self.hasher.hash(password))
            except DatabaseError as error:  # the login stands; the next one rehashes
                log.warning("could not rehash the password of %s: %s", user.name, error)
        return identity_of(user)

    def _exec(self, name: str, password: str, user: UserRecord | None) -> Identity | None:
        program = self.settings.exec_program
        if program is None:
            log.warning("user %r uses the exec driver, but access.exec_program is not configured", name)
            return None
        try:
            vouched, groups = programs.authenticate(program, name, password, timeout=self.settings.exec_timeout)
        except programs.ProgramError as error:
            log.info("exec authentication of %r: %s", name, error)
            return None
        if vouched != name:
            log.info("exec authentication of %r: the program answered for %r", name, vouched)
            return None
        if user is None:
            try:
                user = self.store.create_user(name, groups=groups, driver="exec")
            except DatabaseError:  # created meanwhile by a concurrent login
                user = self.store.get_user(name)
                if user is None:
                    return None
        if tuple(user.groups) != groups:  # the program's groups are the truth; kept for the user's tokens
            user = self.store.update_user(name, groups=groups)
        return identity_of(user)
