"""Password hashes of the built-in authentication driver: argon2id (argon2-cffi), with the configured cost.

Used by ``authenticating`` (verify, and rehash when the cost changed) and the ``nebctl user`` commands (hash).
A password is never stored, logged or returned; only its encoded hash (salt and parameters included) is kept.
"""

from __future__ import annotations

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from nebctl.core.settings import PasswordHashing


class PasswordHasher:
    def __init__(self, cost: PasswordHashing | None = None) -> None:
        cost = cost or PasswordHashing()
        self._hasher = _Argon2(
            time_cost=cost.time_cost,
            memory_cost=cost.memory_cost,
            parallelism=cost.parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Verified against when the user is unknown or has no password, so that such a login costs what a wrong
        # password costs and its timing does not tell the two apart.
        self._decoy = self._hasher.hash("decoy password, never matched")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, encoded: str | None, password: str) -> bool:
        """Whether ``password`` matches ``encoded`` (always False, at the same cost, for ``None``)."""
        try:
            return self._hasher.verify(encoded or self._decoy, password) and encoded is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, encoded: str) -> bool:
        """Whether ``encoded`` was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(encoded)
        except InvalidHashError:
            return True
