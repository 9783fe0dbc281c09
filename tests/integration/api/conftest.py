"""A real ``nebctl serve`` on loopback for the API's tests (one per module: starting one takes seconds), with
users, tokens and access rules written to its database beforehand, as an administrator would with the CLI.

Users: ``admin`` (group admins: every action), ``alice`` (group ops: get and diff everything, apply the site
stack, but no get in namespace secret), ``bob`` (no group: only what everyone may, get hosts), ``dora``
(disabled), ``lee`` (exec driver: tests/integration/access covers the program; here it has none configured).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from nebctl.controller.access import PasswordHasher
from nebctl.core.settings import PasswordHashing
from tests.support.drills import Workspace
from tests.support.serving import FAST, Served, start_serve, vm_manifest, wait_for, write_manifests

CHEAP = PasswordHashing(memory_cost=1024, time_cost=1, parallelism=1)
PASSWORDS = {"admin": "admin pass 1", "alice": "alice pass 2", "bob": "bob pass 3", "dora": "dora pass 4"}
WEBHOOK_SECRET = "webhook-secret-7f3a"
CLOUD_INIT_SECRET = "#cloud-config password: cloud-init-secret-91c2"


# The image and network of the VM in namespace secret (references stay within a namespace).
SECRET_NAMESPACE = """\
apiVersion: nebctl/v1
kind: Image
metadata: {name: base, namespace: secret}
spec: {source: /var/lib/nebctl/images/base.qcow2, format: qcow2, datastore: local}
---
apiVersion: nebctl/v1
kind: Network
metadata: {name: lan, namespace: secret}
spec: {mode: nat, cidr: 10.71.0.0/24}
"""


@dataclass
class Api:
    served: Served
    workspace: Workspace
    tokens: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.served.port}"

    def client(self, user: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, user: str | None = "admin", **kwargs: Any) -> httpx.Response:
        with self.client(user) as client:
            return client.get(path, **kwargs)

    def post(self, path: str, user: str | None = "admin", **kwargs: Any) -> httpx.Response:
        with self.client(user) as client:
            return client.post(path, **kwargs)


def settings(root: Path, **access: Any) -> dict[str, Any]:
    secret_file = root / "webhook.secret"
    secret_file.write_text(WEBHOOK_SECRET + "\n")
    return {
        **FAST,
        "access": {
            "passwords": CHEAP.model_dump(),
            "login_free_failures": 3,
            "login_delay": 0.2,
            "login_max_delay": 1.0,
            **access,
        },
        "api": {"webhook_secret_file": str(secret_file), "max_body": "64Ki", "webhook_max_body": "16Ki"},
    }


def populate(workspace: Workspace) -> dict[str, str]:
    hasher = PasswordHasher(CHEAP)
    tokens = {}
    with workspace.store() as store:
        for name, groups in (("admin", ["admins"]), ("alice", ["ops"]), ("bob", []), ("dora", [])):
            store.create_user(name, password_hash=hasher.hash(PASSWORDS[name]), groups=groups, enabled=name != "dora")
        store.create_user("lee", driver="exec")
        store.add_access_rule(
            subject_type="group", subject="admins", actions=["get", "diff", "apply", "delete", "admin"]
        )
        store.add_access_rule(subject_type="group", subject="ops", actions=["get", "diff"])
        store.add_access_rule(subject_type="group", subject="ops", actions=["apply"], stacks=["site"])
        store.add_access_rule(
            effect="deny", subject_type="group", subject="ops", actions=["get"], namespaces=["secret"]
        )
        store.add_access_rule(subject_type="everyone", subject="*", actions=["get"], kinds=["host"])
        for name in ("admin", "alice", "bob"):
            tokens[name], _ = store.create_token(name, name="tests")
    return tokens


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api")
    workspace = Workspace(root, manifests=root / "manifests", stack="site", settings_overrides=settings(root))
    write_manifests(
        workspace.manifests,
        [
            vm_manifest("web-1", host="h1"),
            vm_manifest("web-2", host="h2", extra=f"  cloudInit: {{userData: '{CLOUD_INIT_SECRET}'}}\n"),
            vm_manifest("vault", host="h1").replace(
                "metadata: {name: vault}", "metadata: {name: vault, namespace: secret}"
            ),
        ],
    )
    (workspace.manifests / "20-secret.yaml").write_text(SECRET_NAMESPACE, encoding="utf-8")
    tokens = populate(workspace)
    served = start_serve(workspace, "-f", str(workspace.manifests), "--stack", "site")
    try:
        wait_for(lambda: served.status().get("sync_status") == "synced", what=f"synced\n{served.output()}")
        yield Api(served, workspace, tokens)
    finally:
        served.terminate()


def secrets_of(api: Api) -> list[str]:
    return [*PASSWORDS.values(), *api.tokens.values(), WEBHOOK_SECRET, "cloud-init-secret-91c2"]


def assert_no_secret(api: Api, text: str) -> None:
    for secret in secrets_of(api):
        assert secret not in text, f"a secret leaked: {text[:300]}"


def as_json(response: httpx.Response) -> Any:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return json.loads(response.text)
