"""Secrets at rest: the specs the database keeps hold a keyed digest of each secret, never the secret.

A secret (cloud-init user data, meta data and network config; a Hook's ``env`` values) is stored as
``hmac-sha256:KEYID:DIGEST``, an HMAC-SHA256 of the value under a key kept outside the database, in a key file
(``load_key_ring``). The digest serves change detection only: ``reveal_spec`` puts a manifest's clear value back
where the stored digest is that value's, so the planner compares clear with clear when nothing changed, and sees
a different value (the digest) when the secret did change. Nothing can turn a digest back into the secret.

``Store`` seals every spec it writes (``seal_spec``); ``controller.applying.Controller`` reveals the records it
plans from. The key file holds one key per line: the first seals, the ones below it (older keys, kept while
records sealed with them remain) still verify, which is how a key is rotated (docs/database.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nebctl.core.keys import Kind
from nebctl.database.errors import DatabaseError

PREFIX = "hmac-sha256:"
KEY_FILE_NAME = "secret.key"
KEY_FILE_ENV = "NEBCTL_SECRET_KEY_FILE"

# Where each kind's spec holds secrets: a path of mapping keys; "*" is every value of a mapping. The schema's
# ``Secret`` fields (schemas.models); tests/database/test_sealing.py checks that this table covers them all.
SECRET_PATHS: Mapping[Kind, tuple[tuple[str, ...], ...]] = {
    Kind.VIRTUAL_MACHINE: (("cloudInit", "userData"), ("cloudInit", "metaData"), ("cloudInit", "networkConfig")),
    Kind.HOOK: (("env", "*"),),
}


class SecretKeyError(DatabaseError):
    """The key file cannot be read or made, or a stored digest was made with a key that is not in it."""


def key_id(key: bytes) -> str:
    """A short public name of a key (its digest's first hex digits), stored with each secret it sealed."""
    return hashlib.sha256(b"nebctl key id:" + key).hexdigest()[:12]


@dataclass(frozen=True)
class KeyRing:
    """The keys of the key file: ``keys[0]`` seals, all of them verify. ``source`` names the file (messages)."""

    keys: tuple[bytes, ...]
    source: str = "(a key of this process only)"
    _by_id: dict[str, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a key ring needs a key")
        object.__setattr__(self, "_by_id", {key_id(key): key for key in self.keys})

    @classmethod
    def ephemeral(cls) -> KeyRing:
        """A ring with one random key, for a store that keeps nothing across processes (tests, tools)."""
        return cls((secrets.token_hex(32).encode(),))

    @property
    def current_id(self) -> str:
        return key_id(self.keys[0])

    def seal(self, value: str) -> str:
        return self._seal(self.keys[0], value)

    @staticmethod
    def _seal(key: bytes, value: str) -> str:
        digest = hmac.new(key, value.encode("utf-8", errors="surrogatepass"), hashlib.sha256).hexdigest()
        return f"{PREFIX}{key_id(key)}:{digest}"

    def knows(self, identifier: str) -> bool:
        return identifier in self._by_id

    def matches(self, value: str, sealed: str) -> bool:
        """Whether ``sealed`` is ``value``'s digest; ``SecretKeyError`` if its key is not in the ring."""
        key = self._by_id.get(sealed_key_id(sealed))
        if key is None:
            raise SecretKeyError(
                f"a secret in the database was sealed with key {sealed_key_id(sealed)}, which is not in {self.source}"
            )
        return hmac.compare_digest(self._seal(key, value), sealed)


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def sealed_key_id(sealed: str) -> str:
    return sealed[len(PREFIX) :].split(":", 1)[0]


def _leaves(spec: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[MutableMapping[str, Any], str]]:
    """The (mapping, key) pairs that ``path`` names in ``spec``, for those present."""
    *parents, last = path
    containers: list[Any] = [spec]
    for part in parents:
        containers = [c.get(part) for c in containers if isinstance(c, Mapping)]
    for container in containers:
        if not isinstance(container, MutableMapping):
            continue
        names = list(container) if last == "*" else [last] if last in container else []
        for name in names:
            yield container, name


def _copy(spec: Mapping[str, Any], kind: Kind) -> dict[str, Any]:
    """A copy deep enough to change the secret leaves of ``kind`` without touching ``spec``."""
    copied = dict(spec)
    for path in SECRET_PATHS.get(kind, ()):
        node: dict[str, Any] = copied
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, Mapping):
                break
            node[part] = dict(child)
            node = node[part]
    return copied


def has_clear_secret(kind: Kind, spec: Mapping[str, Any] | None) -> bool:
    """Whether ``spec`` holds a secret in clear (a record written before secrets were sealed)."""
    if spec is None:
        return False
    return any(
        isinstance(c[n], str) and not is_sealed(c[n])
        for p in SECRET_PATHS.get(kind, ())
        if _may_hold(spec, p)
        for c, n in _leaves(spec, p)
    )


def secret_values(kind: Kind, *specs: Mapping[str, Any] | None) -> list[Any]:
    """The values at the secret paths of ``kind`` in ``specs`` (sealed digests, secrets in clear), in one pass:
    a record whose values hold no digest has nothing for ``reveal_spec`` to put back in clear."""
    paths = SECRET_PATHS.get(kind, ())
    return [
        c[n] for spec in specs if spec is not None for p in paths if _may_hold(spec, p) for c, n in _leaves(spec, p)
    ]


def stored_may_hold_secrets(kind: Kind, stored: object) -> bool:
    """Whether a spec of ``kind`` as stored (its JSON text, or its value when the driver decoded it) may hold a
    value at a secret path. A value is looked into; text is not decoded: it holds none when no member of it is
    named as a path starts and holds what the path goes on in (an object; for a path of one name, anything but
    null). Text with an escape sequence may spell a name otherwise, so it may hold one."""
    if stored is None:
        return False
    if not isinstance(stored, str):
        return not isinstance(stored, Mapping) or bool(secret_values(kind, stored))
    pattern = _SECRET_MEMBERS.get(kind)
    return pattern is not None and ("\\u" in stored or pattern.search(stored) is not None)


def _members(paths: tuple[tuple[str, ...], ...]) -> re.Pattern[str]:
    """What ``stored_may_hold_secrets`` looks for: a member named as one of ``paths`` starts, with its value."""
    return re.compile(  # (the quoted name, a colon, and an opening brace or a value other than null)
        "|".join(
            sorted({f'"{re.escape(path[0])}"\\s*:\\s*' + ("(?!null)" if len(path) == 1 else "\\{") for path in paths})
        )
    )


_SECRET_MEMBERS = {kind: _members(paths) for kind, paths in SECRET_PATHS.items()}


def _may_hold(spec: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    """Whether ``path`` may name a value in ``spec``: most specs lack the mapping it starts from (a VM without
    cloud-init), which is cheaper to tell than walking it."""
    return len(path) == 1 or isinstance(spec.get(path[0]), Mapping)


def map_secrets(kind: Kind, spec: Mapping[str, Any], change: Callable[[tuple[str, ...], Any], Any]) -> dict[str, Any]:
    """A copy of ``spec`` with each value at a secret path of ``kind`` replaced by ``change(path, value)``, the
    path naming the value itself (a ``*`` replaced by its key); ``spec`` is left as it was."""
    copied = _copy(spec, kind)
    for path in SECRET_PATHS.get(kind, ()):
        if _may_hold(copied, path):
            for container, name in _leaves(copied, path):
                container[name] = change((*path[:-1], name), container[name])
    return copied


def seal_spec(kind: Kind, spec: Mapping[str, Any] | None, ring: KeyRing) -> Mapping[str, Any] | None:
    """``spec`` with every clear secret replaced by its digest (the same object when there is nothing to seal)."""
    if spec is None or not has_clear_secret(kind, spec):
        return spec

    def seal(path: tuple[str, ...], value: Any) -> Any:
        return ring.seal(value) if isinstance(value, str) and not is_sealed(value) else value

    return map_secrets(kind, spec, seal)


@dataclass(frozen=True)
class Revealed:
    """A stored spec with the secrets that match the manifest's put back in clear; ``stale`` when one of them
    was sealed with an older key, or stored in clear by an older nebctl (the record is worth writing again)."""

    spec: dict[str, Any] | None
    stale: bool = False


def reveal_spec(
    kind: Kind, stored: Mapping[str, Any] | None, clear: Mapping[str, Any] | None, ring: KeyRing
) -> Revealed:
    """``stored`` with each digest that ``clear`` (the manifest's spec) has the value of replaced by that value.

    A digest that does not match stays: the secret changed, and the planner sees the change. A digest made
    with a key not in the ring raises ``SecretKeyError``.
    """
    paths = SECRET_PATHS.get(kind)
    if stored is None or not paths:
        return Revealed(dict(stored) if stored is not None else None)
    revealed = _copy(stored, kind)
    stale = False
    for path in paths:
        for container, name in _leaves(revealed, path):
            value = container[name]
            if not is_sealed(value):
                # Stored in clear (by a nebctl before sealing): worth writing again, sealed.
                stale = stale or isinstance(value, str)
                continue
            candidate = _value_at(clear, path[:-1], name) if clear is not None else None
            if isinstance(candidate, str) and ring.matches(candidate, value):
                container[name] = candidate
                stale = stale or sealed_key_id(value) != ring.current_id
            elif clear is not None and not ring.knows(sealed_key_id(value)):
                ring.matches("", value)  # raises: the key that sealed it is gone
    return Revealed(revealed, stale)


def _value_at(spec: Mapping[str, Any], parents: tuple[str, ...], name: str) -> Any:
    node: Any = spec
    for part in parents:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node.get(name) if isinstance(node, Mapping) else None


def default_key_file(state_dir: Path) -> Path:
    return state_dir / KEY_FILE_NAME


def _create_key_file(path: Path) -> None:
    """Write a new key file whole, then link it into place: two processes starting at once on a new data
    directory must not read each other's half-written file, and the first one to link it wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as stream:
            stream.write(
                "# nebctl's key for the digests of secrets in its database; keep it, and keep it private.\n"
                "# To rotate: add a new key as the first key line and keep the old ones below it.\n"
                f"{secrets.token_hex(32)}\n"
            )
            stream.flush()
            os.fsync(stream.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        os.unlink(draft)


def load_key_ring(path: Path) -> KeyRing:
    """The keys in ``path``, one per line (blank lines and ``#`` comments skipped); a missing file is created
    with one random key, readable by its owner only (0600)."""
    if not path.exists():
        try:
            _create_key_file(path)
        except OSError as error:
            raise SecretKeyError(f"cannot create the secret key file {path}: {error.strerror or error}") from error
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise SecretKeyError(f"cannot read the secret key file {path}: {error}") from error
    keys = tuple(line.strip().encode() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not keys:
        raise SecretKeyError(f"the secret key file {path} holds no key")
    if any(len(key) < 16 for key in keys):
        raise SecretKeyError(f"the secret key file {path} holds a key shorter than 16 characters")
    return KeyRing(keys, source=f"the secret key file {path}")
