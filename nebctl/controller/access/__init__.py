"""Access control of the HTTP API and the dashboard: who is asking (authentication) and may they (authorization).

The small surface the faces use:

- ``Authenticator(store, settings).authenticate(credentials, address=...) -> Identity``, raising
  ``AuthenticationError`` (one message whatever went wrong, so that no answer tells whether a user exists);
  ``login(user, password, address=...)`` also issues a token. Failed logins are slowed per user and per address
  (``throttling``). Drivers: ``builtin`` (argon2id hashes in the database, ``passwords``) and ``exec`` (an
  external program, ``programs``).
- ``Authorizer(store, settings).authorize(identity, action, target) -> Decision``: the access rules' verdict
  (``core.access.decide``), then the optional external authorize program's.

The CLI's ``user``/``token``/``acl`` commands use ``passwords`` and ``Authorizer`` too.
"""

from nebctl.controller.access.authenticating import (
    AuthenticationError,
    Authenticator,
    Credentials,
    PasswordCredentials,
    TokenCredentials,
)
from nebctl.controller.access.authorizing import Authorizer, rule_of
from nebctl.controller.access.passwords import PasswordHasher
from nebctl.controller.access.throttling import LoginThrottle
from nebctl.core.access import Action, Decision, Identity, Target

__all__ = [
    "Action",
    "AuthenticationError",
    "Authenticator",
    "Authorizer",
    "Credentials",
    "Decision",
    "Identity",
    "LoginThrottle",
    "PasswordCredentials",
    "PasswordHasher",
    "Target",
    "TokenCredentials",
    "rule_of",
]
