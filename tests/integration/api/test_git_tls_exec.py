"""A ``nebctl serve`` following a git repository, over HTTPS (``--tls-cert/--tls-key``), with the exec
authentication driver's program configured: git webhooks (GitHub, Gitea and GitLab signatures, right and wrong;
only a push to the followed repository and branch makes a sync, and what it applies is the fetched commit),
the body limit of webhooks, and logins through a real program that answers, hangs, crashes or prints garbage."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.api.conftest import WEBHOOK_SECRET, settings
from tests.support.drills import Workspace, _env
from tests.support.serving import free_port, vm_manifest, wait_for, write_manifests

PROGRAM = """\
#!/usr/bin/env python3
import json, sys, time
request = json.load(sys.stdin)
user = request["user"]
if user == "hang":
    time.sleep(60)
if user == "crash":
    raise SystemExit(-1 / 0)
if user == "garbage":
    print("<html>oops</html>")
    raise SystemExit(0)
if user == "lee" and request["secret"] == "lee's password":
    print(json.dumps({"name": "lee", "groups": ["ldap-ops"]}))
    raise SystemExit(0)
print("invalid credentials", file=sys.stderr)
raise SystemExit(1)
"""


def _git(repository: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example.org", *args],
        cwd=repository, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@dataclass
class Remote:
    base: str
    cert: Path
    repository: Path
    workspace: Workspace
    process: subprocess.Popen[str]
    log: Path

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, verify=ssl.create_default_context(cafile=self.cert), timeout=30, **kwargs
        )

    def vms(self) -> set[str]:
        with self.workspace.fleet() as fleet:
            shown = fleet.show()
        return {vm["name"] for host in shown["hosts"].values() for vm in host["vms"]}


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    root = tmp_path_factory.mktemp("git")
    program = root / "auth-program"
    program.write_text(PROGRAM)
    program.chmod(0o755)
    config = settings(root, exec_program=str(program), exec_timeout="1s", exec_unknown_users=True)
    config["access"]["login_free_failures"] = 1000  # slowing is tested elsewhere
    workspace = Workspace(root, manifests=root / "manifests", stack="gitops", settings_overrides=config)
    write_manifests(workspace.manifests, [vm_manifest("web-1", host="h1")])
    repository = root / "repo"
    repository.mkdir()
    _git(repository, "init", "-q", "-b", "main")
    for path in workspace.manifests.iterdir():
        (repository / path.name).write_text(path.read_text())
    _git(repository, "add", ".")
    _git(repository, "commit", "-q", "-m", "One web server")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    log = root / "serve.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            workspace.command(
                "serve", "--git", f"file://{repository}", "--branch", "main", "--stack", "gitops",
                "--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key),
            ),
            stdout=handle, stderr=subprocess.STDOUT, text=True, env=_env(),
        )  # fmt: skip
    remote = Remote(f"https://127.0.0.1:{port}", cert, repository, workspace, process, log)

    def answering() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            with remote.client() as client:
                return client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(answering, timeout=60, what="nebctl serve over HTTPS")
        wait_for(lambda: remote.vms() == {"web-1"}, what="the first sync")
        yield remote
    finally:
        process.terminate()
        process.wait(timeout=60)


def _push_payload(remote: Remote, *, branch: str = "main", url: str | None = None) -> bytes:
    clone = url or f"file://{remote.repository}"
    return json.dumps(
        {"ref": f"refs/heads/{branch}", "after": "0" * 40, "repository": {"clone_url": clone, "html_url": clone}}
    ).encode()


def _github(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": "push", "Content-Type": "application/json"}


def test_https_only(remote: Remote) -> None:
    with remote.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
    with pytest.raises(httpx.HTTPError):
        httpx.get(remote.base.replace("https", "http") + "/healthz", timeout=5)


def test_webhook_signatures(remote: Remote) -> None:
    body = _push_payload(remote, branch="elsewhere")
    with remote.client() as client:

        def post(headers: dict[str, str], content: bytes = body) -> httpx.Response:
            return client.post("/api/v1/webhooks/git", content=content, headers=headers)

        assert post({}).status_code == 401
        assert post(_github(body, "wrong secret")).status_code == 401
        assert post(_github(body + b" ")).status_code == 401  # signed a different body
        assert post({"X-Gitea-Signature": "0" * 64}).status_code == 401
        assert post({"X-Gitlab-Token": "guess"}).status_code == 401
        assert post(_github(body)).status_code == 200
        gitea = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert post({"X-Gitea-Signature": gitea}).status_code == 200
        assert post({"X-Gitlab-Token": WEBHOOK_SECRET}).status_code == 200
        big = b"{" + b" " * 17_000 + b"}"
        assert post(_github(big), big).status_code == 413
        assert post(_github(b"[1]"), b"[1]").status_code == 422
        assert post(_github(b"nope"), b"nope").status_code == 422


def test_a_push_to_the_followed_branch_fetches_and_syncs(remote: Remote) -> None:
    (remote.repository / "10-vms.yaml").write_text(
        "---\n".join([vm_manifest("web-1", host="h1"), vm_manifest("web-2", host="h2")])
    )
    _git(remote.repository, "commit", "-q", "-am", "A second web server")
    sha = _git(remote.repository, "rev-parse", "HEAD")
    with remote.client() as client:
        for body in (
            _push_payload(remote, branch="feature"),  # another branch of the same repository
            _push_payload(remote, url="https://github.com/someone/else.git"),  # another repository
        ):
            response = client.post("/api/v1/webhooks/git", content=body, headers=_github(body))
            assert response.status_code == 200 and response.json()["synced"] == []
        time.sleep(2)
        assert remote.vms() == {"web-1"}  # neither made a sync
        # The payload's own "after" is ignored: the service fetches the branch and applies what it finds.
        body = _push_payload(remote, url=f"FILE://{remote.repository}.git/")
        response = client.post("/api/v1/webhooks/git", content=body, headers=_github(body))
        assert response.status_code == 202 and response.json() == {"synced": ["gitops"]}
    wait_for(lambda: remote.vms() == {"web-1", "web-2"}, what="the pushed commit to be applied")
    with remote.workspace.store() as store:
        status = store.stack_status("gitops")
        events = [e for e in store.list_events(limit=100000) if e.type == "api.webhook"]
    assert status is not None and status.revision == sha[:12]
    assert events[-1].data["user"] == "webhook:github"
    assert all(WEBHOOK_SECRET not in json.dumps(e.data) + e.message for e in events)
    assert WEBHOOK_SECRET not in remote.log.read_text()


@pytest.mark.parametrize("user", ["hang", "crash", "garbage", "mallory", "lee-wrong"])
def test_the_exec_program_failing_fails_the_login(remote: Remote, user: str) -> None:
    name, password = ("lee", "not it") if user == "lee-wrong" else (user, "whatever")
    started = time.monotonic()
    with remote.client(auth=(name, password)) as client:
        response = client.get("/api/v1/whoami")
    assert response.status_code == 401 and response.json() == {"detail": "authentication failed"}
    assert time.monotonic() - started < 10  # the hanging program was killed at its 1 s timeout
    with remote.client() as client:
        assert client.get("/healthz").status_code == 200  # and the server is fine


def test_the_exec_program_logs_a_user_in(remote: Remote) -> None:
    with remote.client() as client:
        login = client.post("/api/v1/login", json={"user": "lee", "password": "lee's password"})
        assert login.status_code == 200, login.text
        assert login.json()["groups"] == ["ldap-ops"]
        token = login.json()["token"]
        me = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert me == {"user": "lee", "groups": ["ldap-ops"], "driver": "exec"}
    assert "lee's password" not in remote.log.read_text()
