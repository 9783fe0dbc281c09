"""Session cookies and CSRF tokens: what is accepted and what is refused."""

from __future__ import annotations

from nebctl.dashboard.sessions import SessionKeys


def test_a_cookie_names_its_user_until_it_expires() -> None:
    keys = SessionKeys(ttl=60)
    cookie, session = keys.issue("ada")
    read = keys.read(cookie)
    assert read is not None and read.user == "ada" and read.session_id == session.session_id
    assert SessionKeys(ttl=-1).read(SessionKeys(ttl=-1).issue("ada")[0]) is None


def test_a_forged_or_foreign_cookie_is_refused() -> None:
    keys = SessionKeys()
    cookie, _ = keys.issue("vic")
    body, _, signature = cookie.rpartition(".")
    other_body = SessionKeys().issue("ada")[0].rpartition(".")[0]
    assert keys.read(f"{other_body}.{signature}") is None  # another user's body under vic's signature
    assert keys.read(SessionKeys().issue("vic")[0]) is None  # signed by another process's key
    assert keys.read(body) is None and keys.read("") is None and keys.read(None) is None
    assert keys.read(f"{body}x.{signature}") is None


def test_the_csrf_token_belongs_to_one_session() -> None:
    keys = SessionKeys()
    _, first = keys.issue("ada")
    _, second = keys.issue("ada")
    token = keys.csrf_token(first)
    assert keys.csrf_ok(first, token)
    assert not keys.csrf_ok(second, token)
    altered = token[:-1] + ("1" if token[-1] == "0" else "0")  # one character off
    assert not keys.csrf_ok(first, None) and not keys.csrf_ok(first, "") and not keys.csrf_ok(first, altered)


def test_the_login_token_belongs_to_its_nonce() -> None:
    keys = SessionKeys()
    token = keys.login_token("nonce-1")
    assert keys.login_ok("nonce-1", token)
    assert not keys.login_ok("nonce-2", token) and not keys.login_ok(None, token) and not keys.login_ok("nonce-1", "")
