"""Who a dashboard user is and what they may do, answered by nebctl's access control (``controller.access``), the
same as for the HTTP API: the same users and drivers (argon2id, exec), the same login throttle, the same rules
and authorize program.

``Authority`` is the seam the routes use: check a name and password, look a signed-in user up again on each
request (a disabled or deleted user is signed out at once), and ask whether they may do an action on a target.
``AccessAuthority`` is its implementation over ``Authenticator`` and ``Authorizer``. Used by ``dashboard.app``;
``nebctl serve`` builds the ``AccessAuthority``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from nebctl.controller.access import AuthenticationError, Authenticator, Authorizer, Identity, Target
from nebctl.controller.access.authenticating import PasswordCredentials, identity_of
from nebctl.core.access import Rule
from nebctl.database.store import Store

__all__ = ["AccessAuthority", "AuthenticationError", "Authority", "Principal", "Target"]


class Authority(Protocol):
    def authenticate(self, name: str, password: str, *, address: str | None) -> Identity:
        """The user when the password is theirs; else ``AuthenticationError`` (with ``retry_after`` when the
        attempt was refused by the throttle)."""
        ...

    def identity(self, name: str) -> Identity | None:
        """The user as they are now; None when deleted or disabled."""
        ...

    def rules(self) -> list[Rule]: ...

    def allows(self, identity: Identity, action: str, target: Target, *, rules: list[Rule]) -> bool: ...


@dataclass
class Principal:
    """A signed-in user for the length of one request: the rules are read once, the verdicts kept."""

    identity: Identity
    authority: Authority
    _rules: list[Rule] | None = None
    _verdicts: dict[tuple[str, Target], bool] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.identity.name

    def may(self, action: str, target: Target | None = None) -> bool:
        target = target or Target()
        key = (action, target)
        if key not in self._verdicts:
            if self._rules is None:
                self._rules = self.authority.rules()
            self._verdicts[key] = self.authority.allows(self.identity, action, target, rules=self._rules)
        return self._verdicts[key]


class AccessAuthority:
    def __init__(self, store: Store, authenticator: Authenticator, authorizer: Authorizer) -> None:
        self.store = store
        self.authenticator = authenticator
        self.authorizer = authorizer

    def authenticate(self, name: str, password: str, *, address: str | None) -> Identity:
        return self.authenticator.authenticate(PasswordCredentials(name, password), address=address)

    def identity(self, name: str) -> Identity | None:
        user = self.store.get_user(name)
        return identity_of(user) if user is not None and user.enabled else None

    def rules(self) -> list[Rule]:
        return self.authorizer.rules()

    def allows(self, identity: Identity, action: str, target: Target, *, rules: list[Rule]) -> bool:
        return self.authorizer.authorize(identity, action, target, rules=rules).allowed
