"""The dashboard over plain HTTP against a real ``nebctl serve``: what needs a session, what a disabled user or a
wrong password gets, ``--no-dashboard``, and the wheel carrying the templates and vendored assets."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx

from tests.integration.serving.conftest import make_workspace
from tests.support.browser import add_user
from tests.support.drills import REPO_ROOT, Workspace
from tests.support.serving import Served, start_serve, wait_for

PAGES = ["/", "/stacks/site", "/stacks/site/plan", "/hosts", "/vms/default/web-1", "/applies/1", "/events"]


def _serve(workspace: Workspace, *args: str) -> Served:
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", workspace.stack, *args)
    wait_for(lambda: served.status().get("sync_status") == "synced", what="the stack to be synced")
    return served


def _sign_in(client: httpx.Client, name: str, password: str) -> httpx.Response:
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    return client.post("/login", data={"csrf": token.group(1), "username": name, "password": password, "next": "/"})


def test_pages_need_a_session_and_a_disabled_user_loses_theirs(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    workspace.run("status")
    add_user(workspace, "ada", "correct horse", ["get", "diff", "apply"])
    served = _serve(workspace)
    try:
        with httpx.Client(base_url=served.url("")) as client:
            for path in PAGES:
                response = client.get(path)
                assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
            assert client.post("/stacks/site/sync").status_code == 401
            assert client.get("/events/stream").status_code == 303
            # The login form without the token its page set is refused before any password is checked.
            assert client.post("/login", data={"username": "ada", "password": "correct horse"}).status_code == 403
            refused = _sign_in(client, "ada", "wrong")
            assert refused.status_code == 303 and "failed=1" in refused.headers["location"]
            assert "nebctl_session" not in client.cookies
            assert _sign_in(client, "ada", "correct horse").headers["location"] == "/"
            for path in PAGES:
                assert client.get(path).status_code == 200, path
            # Not allowed admin: the mode switch is refused even with the right token.
            stack = client.get("/stacks/site").text
            assert 'id="sync-now"' in stack and 'id="switch-mode"' not in stack
            token = re.search(r'name="csrf" value="([^"]+)"', stack)
            assert token is not None
            assert (
                client.post("/stacks/site/mode", data={"csrf": token.group(1), "mode": "report-only"}).status_code
                == 403
            )
            assert workspace.run("user", "disable", "ada").returncode == 0
            assert client.get("/").status_code == 303  # signed out at once
    finally:
        served.terminate()


def test_no_dashboard_serves_only_health_and_metrics(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    served = _serve(workspace, "--no-dashboard")
    try:
        assert served.get("/healthz")[0] == 200
        assert served.get("/")[0] == 404 and served.get("/login")[0] == 404
        assert served.get("/static/htmx.min.js")[0] == 404
    finally:
        served.terminate()


def test_the_wheel_carries_the_templates_and_the_vendored_assets(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("nebctl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = REPO_ROOT / "nebctl" / "dashboard"
    expected = {
        str(path.relative_to(REPO_ROOT))
        for pattern in ("templates/*.html", "static/*", "static/licenses/*")
        for path in package.glob(pattern)
        if path.is_file()
    }
    assert len(expected) > 15
    assert expected <= names, sorted(expected - names)


def test_a_banner_says_when_the_source_cannot_be_fetched(tmp_path: Path) -> None:
    from tests.browser.conftest import git

    workspace = make_workspace(tmp_path / "ws")
    workspace.run("status")
    add_user(workspace, "ada", "correct horse", ["get"])
    repository = tmp_path / "repo"
    repository.mkdir()
    git(repository, "init", "-q", "-b", "trunk")
    for path in workspace.manifests.iterdir():
        (repository / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    git(repository, "add", ".")
    git(repository, "commit", "-q", "-m", "Two web servers")
    served = start_serve(workspace, "--git", f"file://{repository}", "--branch", "trunk", "--stack", "site")
    try:
        wait_for(lambda: served.status().get("sync_status") == "synced", what="the stack to be synced")
        with httpx.Client(base_url=served.url("")) as client:
            _sign_in(client, "ada", "correct horse")
            assert 'role="alert"' not in client.get("/").text
            repository.rename(tmp_path / "gone")
            assert workspace.run("sync", "site").returncode == 0
            served.wait_event("source.error")
            page = client.get("/").text
            assert 'class="banner" role="alert"' in page and "The source of stack site cannot be fetched" in page
            (tmp_path / "gone").rename(repository)
            assert workspace.run("sync", "site", "--wait", "30s").returncode == 0
            assert 'class="banner"' not in client.get("/").text
    finally:
        served.terminate()


def test_under_tls_the_session_cookie_is_secure(tmp_path: Path) -> None:
    import ssl

    from tests.support.drills import _env
    from tests.support.serving import free_port

    workspace = make_workspace(tmp_path / "ws")
    workspace.run("status")
    add_user(workspace, "ada", "correct horse", ["get"])
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        workspace.command(
            "serve", "-f", str(workspace.manifests), "--stack", "site", "--listen", f"127.0.0.1:{port}",
            "--tls-cert", str(cert), "--tls-key", str(key),
        ),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
    )  # fmt: skip
    try:
        verify = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=verify) as client:

            def answering() -> bool:
                assert process.poll() is None
                try:
                    return client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(answering, timeout=60, what="nebctl serve over HTTPS")
            signed = _sign_in(client, "ada", "correct horse")
            cookie = next(v for k, v in signed.headers.multi_items() if k == "set-cookie" and "nebctl_session=" in v)
            attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
            assert {"secure", "httponly", "samesite"} <= attributes, cookie
            assert client.get("/").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=60)
