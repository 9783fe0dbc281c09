"""Store operations on identities and permissions: users, API tokens, access rules and quotas.

Mixed into ``Store`` and ``Batch``. These are plain records; ``controller.access`` (authentication and
authorization) and the ``user``/``token``/``acl``/``quota`` commands decide what they mean. Passwords arrive
already hashed by the authentication driver; API tokens are random secrets of which only a SHA-256 digest is
kept (a digest is enough for a secret with 256 bits of entropy, and lets a lookup use the unique index).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exc, insert, select, update

from nebctl.core.access import make_rule
from nebctl.database.errors import DatabaseError, NotFound
from nebctl.database.models import AccessRule, Quota, Token, User
from nebctl.database.operating import AnyRow, Operations, table, upsert
from nebctl.database.records import AccessRuleRecord, QuotaRecord, TokenRecord, UserRecord
from nebctl.database.versions import ACCESS, bump

_users = table(User)
_tokens = table(Token)
_rules = table(AccessRule)
_quotas = table(Quota)

LAST_USE_PRECISION = timedelta(minutes=1)
TOKEN_PREFIX = "nbt_"  # makes leaked tokens recognisable to secret scanners
_UNCHANGED: Any = object()


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _user(row: AnyRow) -> UserRecord:
    return UserRecord(
        id=row.id,
        name=row.name,
        password_hash=row.password_hash,
        groups=tuple(row.groups or ()),
        enabled=row.enabled,
        created_at=row.created_at,
        driver=row.driver,
    )


def _token(row: AnyRow) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        user_id=row.user_id,
        user=row.user,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


def _rule(row: AnyRow) -> AccessRuleRecord:
    return AccessRuleRecord(
        id=row.id,
        subject_type=row.subject_type,
        subject=row.subject,
        actions=tuple(row.actions),
        kinds=tuple(row.kinds),
        namespaces=tuple(row.namespaces),
        created_at=row.created_at,
        effect=row.effect,
        stacks=tuple(row.stacks) if row.stacks is not None else ("*",),
    )


def _quota(row: AnyRow) -> QuotaRecord:
    return QuotaRecord(
        scope_type=row.scope_type,
        scope=row.scope,
        vms=row.vms,
        vcpu=row.vcpu,
        memory=row.memory,
        disk=row.disk,
    )


_token_query = select(*_tokens.c, _users.c.name.label("user")).join(_users, _users.c.id == _tokens.c.user_id)


class AccessOperations(Operations):
    def now(self) -> datetime:
        """The store's clock (expiries are computed from it, so that tests can move it)."""
        return self._now()

    # --- users ---------------------------------------------------------------------------------------------

    def create_user(
        self,
        name: str,
        *,
        password_hash: str | None = None,
        groups: Sequence[str] = (),
        enabled: bool = True,
        driver: str = "builtin",
    ) -> UserRecord:
        values = {
            "name": name,
            "driver": driver,
            "password_hash": password_hash,
            "groups": list(groups),
            "enabled": enabled,
            "created_at": self._now(),
        }
        try:
            with self._write() as connection:
                bump(connection, ACCESS)
                connection.execute(insert(_users).values(values))
                row = connection.execute(select(_users).where(_users.c.name == name)).one()
        except DatabaseError as error:
            if isinstance(error.__cause__, exc.IntegrityError):
                raise DatabaseError(f"user {name!r} already exists") from error
            raise
        return _user(row)

    def get_user(self, name: str) -> UserRecord | None:
        with self._read() as connection:
            row = connection.execute(select(_users).where(_users.c.name == name)).first()
        return _user(row) if row is not None else None

    def list_users(self) -> list[UserRecord]:
        with self._read() as connection:
            return [_user(row) for row in connection.execute(select(_users).order_by(_users.c.name))]

    def update_user(
        self,
        name: str,
        *,
        password_hash: str | None = _UNCHANGED,
        groups: Sequence[str] | None = None,
        enabled: bool | None = None,
    ) -> UserRecord:
        """Change some fields of a user (``password_hash=None`` removes the password)."""
        values: dict[str, Any] = {}
        if password_hash is not _UNCHANGED:
            values["password_hash"] = password_hash
        if groups is not None:
            values["groups"] = list(groups)
        if enabled is not None:
            values["enabled"] = enabled
        with self._write() as connection:
            if values:
                bump(connection, ACCESS)
                connection.execute(update(_users).where(_users.c.name == name).values(values))
            row = connection.execute(select(_users).where(_users.c.name == name)).first()
        if row is None:
            raise NotFound(f"no user {name!r}")
        return _user(row)

    def delete_user(self, name: str) -> bool:
        """Delete a user and (by cascade) its tokens."""
        with self._write() as connection:
            bump(connection, ACCESS)
            user_id = connection.execute(select(_users.c.id).where(_users.c.name == name)).scalar()
            if user_id is None:
                return False
            # Explicit, not only ON DELETE CASCADE: SQLite enforces foreign keys only when asked to.
            connection.execute(delete(_tokens).where(_tokens.c.user_id == user_id))
            connection.execute(delete(_users).where(_users.c.id == user_id))
        return True

    # --- API tokens ----------------------------------------------------------------------------------------

    def create_token(self, user: str, *, name: str, expires_at: datetime | None = None) -> tuple[str, TokenRecord]:
        """Issue a token for ``user``: returns the secret (shown once, never stored) and its record."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._write() as connection:
            user_id = connection.execute(select(_users.c.id).where(_users.c.name == user)).scalar()
            if user_id is None:
                raise NotFound(f"no user {user!r}")
            result = connection.execute(
                insert(_tokens).values(
                    user_id=user_id,
                    name=name,
                    token_hash=token_digest(secret),
                    created_at=self._now(),
                    expires_at=expires_at,
                )
            )
            token_id = result.inserted_primary_key[0]  # type: ignore[index]
            row = connection.execute(_token_query.where(_tokens.c.id == token_id)).one()
        return secret, _token(row)

    def verify_token(self, secret: str) -> TokenRecord | None:
        """The token whose secret this is, if it exists, has not expired and its user is enabled."""
        now = self._now()
        digest = token_digest(secret)
        with self._read() as connection:
            row = connection.execute(
                _token_query.where(_tokens.c.token_hash == digest, _users.c.enabled.is_(True))
            ).first()
        # The lookup goes by the digest's unique index; the comparison that grants access is constant-time.
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        # The last use is kept to the minute: a busy client must not turn every read into a write.
        if row.last_used_at is None or now - row.last_used_at >= LAST_USE_PRECISION:
            with self._write() as connection:
                connection.execute(update(_tokens).where(_tokens.c.id == row.id).values(last_used_at=now))
        return _token(row)

    def list_tokens(self, *, user: str | None = None) -> list[TokenRecord]:
        query = _token_query.order_by(_tokens.c.id)
        if user is not None:
            query = query.where(_users.c.name == user)
        with self._read() as connection:
            return [_token(row) for row in connection.execute(query)]

    def revoke_token(self, token_id: int) -> bool:
        with self._write() as connection:
            bump(connection, ACCESS)
            return connection.execute(delete(_tokens).where(_tokens.c.id == token_id)).rowcount > 0

    # --- access rules --------------------------------------------------------------------------------------

    def add_access_rule(
        self,
        *,
        subject_type: str,
        subject: str,
        actions: Sequence[str],
        kinds: Sequence[str] = ("*",),
        namespaces: Sequence[str] = ("*",),
        stacks: Sequence[str] = ("*",),
        effect: str = "allow",
    ) -> AccessRuleRecord:
        """Allow (or deny) ``subject`` (a user, a group, or everyone) ``actions`` on ``kinds`` in ``namespaces``
        and ``stacks`` (globs, ``*``: all). Raises ``ValueError`` (``core.access.RuleError``) for a bad value."""
        rule = make_rule(
            id=0,
            effect=effect,
            subject_type=subject_type,
            subject=subject,
            actions=actions,
            kinds=kinds,
            namespaces=namespaces,
            stacks=stacks,
        )
        values = {
            "subject_type": rule.subject_type.value,
            "subject": rule.subject,
            "effect": rule.effect.value,
            "actions": list(rule.actions),
            "kinds": list(rule.kinds),
            "namespaces": list(rule.namespaces),
            "stacks": list(rule.stacks),
            "created_at": self._now(),
        }
        with self._write() as connection:
            bump(connection, ACCESS)
            rule_id = connection.execute(insert(_rules).values(values)).inserted_primary_key[0]  # type: ignore[index]
            row = connection.execute(select(_rules).where(_rules.c.id == rule_id)).one()
        return _rule(row)

    def list_access_rules(self) -> list[AccessRuleRecord]:
        with self._read() as connection:
            return [_rule(row) for row in connection.execute(select(_rules).order_by(_rules.c.id))]

    def delete_access_rule(self, rule_id: int) -> bool:
        with self._write() as connection:
            bump(connection, ACCESS)
            return connection.execute(delete(_rules).where(_rules.c.id == rule_id)).rowcount > 0

    # --- quotas --------------------------------------------------------------------------------------------

    def set_quota(self, quota: QuotaRecord) -> None:
        """Create or replace the quota of a group or namespace."""
        if quota.scope_type not in ("group", "namespace"):
            raise ValueError(f"scope_type must be 'group' or 'namespace', not {quota.scope_type!r}")
        row = {
            "scope_type": quota.scope_type,
            "scope": quota.scope,
            "vms": quota.vms,
            "vcpu": quota.vcpu,
            "memory": quota.memory,
            "disk": quota.disk,
        }
        with self._write() as connection:
            bump(connection, ACCESS)
            upsert(
                connection, _quotas, [row], conflict=("scope_type", "scope"), update=("vms", "vcpu", "memory", "disk")
            )

    def get_quota(self, scope_type: str, scope: str) -> QuotaRecord | None:
        query = select(_quotas).where(_quotas.c.scope_type == scope_type, _quotas.c.scope == scope)
        with self._read() as connection:
            row = connection.execute(query).first()
        return _quota(row) if row is not None else None

    def list_quotas(self) -> list[QuotaRecord]:
        query = select(_quotas).order_by(_quotas.c.scope_type, _quotas.c.scope)
        with self._read() as connection:
            return [_quota(row) for row in connection.execute(query)]

    def delete_quota(self, scope_type: str, scope: str) -> bool:
        statement = delete(_quotas).where(_quotas.c.scope_type == scope_type, _quotas.c.scope == scope)
        with self._write() as connection:
            bump(connection, ACCESS)
            return connection.execute(statement).rowcount > 0
