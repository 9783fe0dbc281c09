"""Authentication against a real database and real programs: builtin argon2id passwords (rehashed when the cost
changes), tokens (expiry, revocation, disabled owners), the one answer to every failure, the throttle, and the
exec driver's program (the shipped example, and programs that hang, crash, print garbage or echo the secret)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nebctl.controller.access import (
    AuthenticationError,
    Authenticator,
    PasswordCredentials,
    PasswordHasher,
    TokenCredentials,
)
from nebctl.core.settings import AccessSettings, PasswordHashing
from nebctl.database.store import Store

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "auth" / "directory-auth"
CHEAP = PasswordHashing(memory_cost=1024, time_cost=1, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'db'}", clock=clock) as store:
        yield store


def _program(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_builtin_password_and_rehash_when_the_cost_changes(store: Store) -> None:
    old = PasswordHasher(CHEAP)
    store.create_user("alice", password_hash=old.hash("s3cret pass"), groups=["ops"])
    stored = store.get_user("alice").password_hash  # type: ignore[union-attr]
    assert stored is not None and stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    stronger = AccessSettings(passwords=PasswordHashing(memory_cost=2048, time_cost=2, parallelism=1))
    auth = Authenticator(store, stronger)
    identity = auth.authenticate(PasswordCredentials("alice", "s3cret pass"))
    assert (identity.name, identity.groups, identity.driver) == ("alice", ("ops",), "builtin")
    rehashed = store.get_user("alice").password_hash  # type: ignore[union-attr]
    assert rehashed is not None and rehashed.startswith("$argon2id$v=19$m=2048,t=2,p=1$")
    auth.authenticate(PasswordCredentials("alice", "s3cret pass"))  # the new hash verifies; not rehashed again
    assert store.get_user("alice").password_hash == rehashed  # type: ignore[union-attr]


def test_every_failure_says_the_same(store: Store) -> None:
    hasher = PasswordHasher(CHEAP)
    store.create_user("alice", password_hash=hasher.hash("right"))
    store.create_user("dora", password_hash=hasher.hash("right"), enabled=False)
    store.create_user("nopass")
    auth = Authenticator(store, AccessSettings(passwords=CHEAP, login_free_failures=100))
    messages = set()
    for user, password in [("alice", "wrong"), ("nobody", "right"), ("dora", "right"), ("nopass", ""), ("", "x")]:
        with pytest.raises(AuthenticationError) as caught:
            auth.authenticate(PasswordCredentials(user, password), address="10.0.0.1")
        messages.add(str(caught.value))
    assert messages == {"authentication failed"}


def test_tokens_expire_are_revoked_and_die_with_their_user(store: Store, clock: Clock) -> None:
    store.create_user("alice", password_hash=PasswordHasher(CHEAP).hash("pw"), groups=["dev"])
    auth = Authenticator(store, AccessSettings(passwords=CHEAP, token_lifetime=3600))
    secret, record, identity = auth.login("alice", "pw", address="127.0.0.1")
    assert identity.name == "alice" and record.expires_at == clock.now + timedelta(hours=1)
    assert secret.startswith("nbt_") and len(secret) == 4 + 43  # 32 random bytes, base64url
    # Only the digest is stored.
    with store._read() as connection:  # the raw table: no column holds the secret
        rows = connection.exec_driver_sql("SELECT * FROM tokens").all()
    assert all(secret not in str(value) for row in rows for value in row)
    assert hashlib.sha256(secret.encode()).hexdigest() in {str(v) for row in rows for v in row}
    assert auth.authenticate(TokenCredentials(secret)).name == "alice"
    assert store.list_tokens()[0].last_used_at == clock.now
    first_use = clock.now
    clock.now += timedelta(seconds=59)  # the last use is kept to the minute: not written again yet
    assert auth.authenticate(TokenCredentials(secret)).name == "alice"
    assert store.list_tokens()[0].last_used_at == first_use
    clock.now += timedelta(seconds=1)
    auth.authenticate(TokenCredentials(secret))
    assert store.list_tokens()[0].last_used_at == clock.now
    clock.now = first_use
    clock.now += timedelta(hours=1, seconds=1)
    with pytest.raises(AuthenticationError):
        auth.authenticate(TokenCredentials(secret))
    secret2, record2 = auth.issue_token("alice", name="ci", expires_at=None)
    assert auth.authenticate(TokenCredentials(secret2)).groups == ("dev",)
    store.update_user("alice", enabled=False)
    with pytest.raises(AuthenticationError):
        auth.authenticate(TokenCredentials(secret2))
    store.update_user("alice", enabled=True)
    assert store.revoke_token(record2.id)
    for bad in (secret2, "nbt_" + "A" * 43, "garbage", ""):
        with pytest.raises(AuthenticationError):
            auth.authenticate(TokenCredentials(bad))


def test_failed_logins_are_slowed_per_user_and_per_address(store: Store) -> None:
    store.create_user("alice", password_hash=PasswordHasher(CHEAP).hash("pw"))
    settings = AccessSettings(passwords=CHEAP, login_free_failures=2, login_delay=0.3, login_max_delay=5)
    auth = Authenticator(store, settings)
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="authentication failed"):
            auth.authenticate(PasswordCredentials("alice", "bad"), address="10.0.0.1")
    # Now even the right password is refused until the delay has passed, from any address...
    with pytest.raises(AuthenticationError, match="too many failed logins") as caught:
        auth.authenticate(PasswordCredentials("alice", "pw"), address="10.0.0.2")
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 0.3
    # ... and any user from that address, known or not, alike.
    with pytest.raises(AuthenticationError, match="too many failed logins"):
        auth.authenticate(PasswordCredentials("ghost", "pw"), address="10.0.0.1")
    time.sleep(0.35)
    assert auth.authenticate(PasswordCredentials("alice", "pw"), address="10.0.0.2").name == "alice"


# --- the exec driver --------------------------------------------------------------------------------------------


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped example program, beside a directory with alice (password 'open sesame', groups ops, dev)."""
    program = tmp_path / "auth" / "directory-auth"
    program.parent.mkdir()
    shutil.copy(EXAMPLE, program)
    salt = bytes(range(16))
    entry = {
        "salt": salt.hex(),
        "pbkdf2_sha256": hashlib.pbkdf2_hmac("sha256", b"open sesame", salt, 1000).hex(),
        "iterations": 1000,
        "groups": ["ops", "dev"],
    }
    (program.parent / "directory.json").write_text(json.dumps({"alice": entry}))
    return program


def test_the_example_program_logs_users_in_and_creates_their_record(store: Store, example: Path) -> None:
    auth = Authenticator(store, AccessSettings(exec_program=example, exec_unknown_users=True, passwords=CHEAP))
    identity = auth.authenticate(PasswordCredentials("alice", "open sesame"))
    assert (identity.name, identity.groups, identity.driver) == ("alice", ("ops", "dev"), "exec")
    record = store.get_user("alice")
    assert record is not None and record.driver == "exec" and record.password_hash is None
    secret, _, _ = auth.login("alice", "open sesame")
    assert auth.authenticate(TokenCredentials(secret)).groups == ("ops", "dev")
    with pytest.raises(AuthenticationError):
        auth.authenticate(PasswordCredentials("alice", "wrong"))
    with pytest.raises(AuthenticationError):
        auth.authenticate(PasswordCredentials("mallory", "open sesame"))
    assert store.get_user("mallory") is None


def test_without_exec_unknown_users_only_exec_records_use_the_program(store: Store, example: Path) -> None:
    auth = Authenticator(store, AccessSettings(exec_program=example, passwords=CHEAP))
    with pytest.raises(AuthenticationError):
        auth.authenticate(PasswordCredentials("alice", "open sesame"))  # no record: builtin, unknown
    store.create_user("alice", driver="exec")
    assert auth.authenticate(PasswordCredentials("alice", "open sesame")).groups == ("ops", "dev")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("sleep 30\n", "did not answer within 1s"),
        ("kill -SEGV $$\n", "exited with -11"),
        ("echo 'not json at all'\n", "not JSON"),
        ("echo '[1, 2]'\n", "not an object"),
        ('echo \'{"name": "alice", "groups": "ops"}\'\n', "'groups' must be a list"),
        ('echo \'{"name": "root", "groups": []}\'\n', "answered for 'root'"),
        ("cat >&2; exit 1\n", '"secret": "***"'),  # the program echoed its input: masked in the reason
        ('cat >&2; printf "\\nbad password\\n" >&2; exit 1\n', "exited with 1: bad password"),
    ],
)
def test_a_failing_program_fails_the_login(
    store: Store, tmp_path: Path, body: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    program = _program(tmp_path, "auth", body)
    store.create_user("alice", driver="exec")
    auth = Authenticator(store, AccessSettings(exec_program=program, exec_timeout=1, passwords=CHEAP))
    started = time.monotonic()
    with (
        caplog.at_level(logging.DEBUG, logger="nebctl"),
        pytest.raises(AuthenticationError, match=r"^authentication failed$"),
    ):
        auth.authenticate(PasswordCredentials("alice", "Hunter2-secret"))
    assert time.monotonic() - started < 10  # the hanging one was killed at its timeout
    assert reason in caplog.text
    assert "Hunter2-secret" not in caplog.text  # the program echoed the secret on stderr: not logged


def test_a_hanging_program_leaves_no_process_behind(store: Store, tmp_path: Path) -> None:
    marker = tmp_path / "pids"
    program = _program(tmp_path, "auth", f"sleep 60 & echo $! >> {marker}\necho $$ >> {marker}\nwait\n")
    store.create_user("alice", driver="exec")
    auth = Authenticator(store, AccessSettings(exec_program=program, exec_timeout=0.5, passwords=CHEAP))
    with pytest.raises(AuthenticationError):
        auth.authenticate(PasswordCredentials("alice", "x"))
    pids = [int(p) for p in marker.read_text().split()]
    time.sleep(0.2)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_missing_program_fails_the_login(store: Store, tmp_path: Path) -> None:
    store.create_user("alice", driver="exec")
    auth = Authenticator(store, AccessSettings(exec_program=tmp_path / "absent", passwords=CHEAP))
    with pytest.raises(AuthenticationError):
        auth.authenticate(PasswordCredentials("alice", "x"))
    assert os.path.exists(tmp_path)
