"""The ``user``, ``group``, ``token`` and ``acl`` commands, run as a user runs them: passwords from stdin (never
argv), a token printed once and stored as a digest, rules added, listed, checked (which rule decided, exit 0/1)
and removed, bad input refused with a clear error and nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nebctl.controller.access import Authenticator, PasswordCredentials, TokenCredentials
from nebctl.database.store import Store


class Cli:
    def __init__(self, root: Path) -> None:
        self.db = f"sqlite:///{root / 'db'}"
        self.config = root / "config.yaml"
        # A cheap argon2id cost keeps the test fast; the rehash test covers the real cost's parameters.
        self.config.write_text(
            json.dumps({"state_dir": str(root), "access": {"passwords": {"memory_cost": 1024, "time_cost": 1}}})
        )

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nebctl", "--db", self.db, "--config", str(self.config), *args],
            input=stdin, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_users_groups_and_tokens(cli: Cli) -> None:
    added = cli("user", "add", "alice", "--group", "ops", "--password-stdin", stdin="correct horse\n")
    assert added.returncode == 0, added.stderr
    assert cli("user", "add", "bob", "--password-stdin", stdin="battery staple\n").returncode == 0
    assert cli("user", "add", "lee", "--driver", "exec").returncode == 0  # no password asked
    again = cli("user", "add", "alice", "--password-stdin", stdin="x\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    empty = cli("user", "add", "carl", "--password-stdin", stdin="\n")
    assert empty.returncode == 1 and "empty" in empty.stderr
    bad = cli("user", "add", "a b", "--password-stdin", stdin="x\n")
    assert bad.returncode == 1 and "without spaces" in bad.stderr
    users = json.loads(cli("user", "list", "-o", "json").stdout)
    assert [(u["name"], u["driver"], u["groups"], u["has_password"]) for u in users] == [
        ("alice", "builtin", ["ops"], True),
        ("bob", "builtin", [], True),
        ("lee", "exec", [], False),
    ]
    assert "correct horse" not in cli("user", "list", "-o", "json").stdout
    assert cli("group", "add", "dev", "alice", "bob").returncode == 0
    missing = cli("group", "add", "dev", "bob", "nobody")
    assert missing.returncode == 1 and "no user 'nobody'" in missing.stderr
    assert cli("group", "remove", "ops", "alice").returncode == 0
    groups = cli("group", "list").stdout.splitlines()
    assert groups[1:] == ["dev    alice,bob"]
    assert cli("user", "passwd", "alice", "--password-stdin", stdin="new password\n").returncode == 0
    created = cli("token", "create", "alice", "--name", "ci", "--expires", "1d")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    listed = cli("token", "list")
    assert "alice" in listed.stdout and "ci" in listed.stdout and secret not in listed.stdout
    with Store.open(cli.db) as store:
        auth = Authenticator(store)
        assert auth.authenticate(TokenCredentials(secret)).groups == ("dev",)
        assert auth.authenticate(PasswordCredentials("alice", "new password")).name == "alice"
        token_id = store.list_tokens()[0].id
    assert cli("user", "disable", "alice").returncode == 0
    with Store.open(cli.db) as store:
        assert not store.get_user("alice").enabled  # type: ignore[union-attr]
    assert cli("token", "revoke", str(token_id)).returncode == 0
    assert cli("token", "revoke", str(token_id)).returncode == 1
    assert cli("user", "delete", "bob").returncode == 0
    gone = cli("user", "delete", "bob")
    assert gone.returncode == 1 and "no user 'bob'" in gone.stderr


def test_no_password_option_exists(cli: Cli) -> None:
    """A password can only come from a prompt or stdin: there is no option to put one in argv."""
    result = cli("user", "add", "alice", "--password", "secret")
    assert result.returncode == 2 and "No such option" in result.stderr


def test_access_rules_and_check(cli: Cli) -> None:
    cli("user", "add", "alice", "--group", "ops", "--password-stdin", stdin="pw\n")
    assert (
        cli("acl", "add", "allow", "--group", "ops", "--action", "get,diff", "--kind", "vm").stdout == "rule 1 added\n"
    )
    assert cli("acl", "add", "deny", "--user", "alice", "--action", "get", "--namespace", "prod").returncode == 0
    assert cli("acl", "add", "allow", "--everyone", "--action", "get", "--kind", "host").returncode == 0
    listed = cli("acl", "list").stdout.splitlines()
    assert listed[1].split() == ["1", "allow", "group:ops", "get,diff", "vm", "*", "*"]
    assert listed[3].split() == ["3", "allow", "everyone", "get", "host", "*", "*"]

    allowed = cli("acl", "check", "alice", "get", "team-a/vm/web")
    assert allowed.returncode == 0 and "ALLOWED" in allowed.stdout and "rule 1:" in allowed.stdout
    denied = cli("acl", "check", "alice", "get", "prod/vm/web")
    assert denied.returncode == 1 and "denied by rule 2" in denied.stdout and "also matched: rule 1" in denied.stdout
    default = cli("acl", "check", "alice", "apply", "vm/web")
    assert default.returncode == 1 and "no rule allows alice to apply" in default.stdout
    stranger = cli("acl", "check", "zed", "get", "host/h1")
    assert stranger.returncode == 0 and "rule 3" in stranger.stdout and "no user 'zed'" in stranger.stderr

    for args, message in [
        (("allow", "--action", "get"), "exactly one subject"),
        (("allow", "--user", "a", "--group", "b", "--action", "get"), "exactly one subject"),
        (("allow", "--user", "a", "--action", "frob"), "unknown action 'frob'"),
    ]:
        result = cli("acl", "add", *args)
        assert result.returncode == 1 and message in result.stderr
    assert len(cli("acl", "list").stdout.splitlines()) == 4  # nothing added by the refused ones
    assert cli("acl", "remove", "2").returncode == 0
    assert cli("acl", "check", "alice", "get", "prod/vm/web").returncode == 0
    assert cli("acl", "remove", "2").returncode == 1
