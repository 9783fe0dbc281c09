"""What the API keeps in memory never outlives what it shows: two real ``nebctl serve`` replicas on one database,
over HTTP with httpx, while this test changes the database through a store of its own (as the CLI or a third
replica would). A changed, added or deleted record is in the next page each replica serves; a revoked token, a
disabled or deleted user and an expired token are refused at their next request; a change of the rules or of a
user's groups changes what that user sees at the next request; and callers who may see different things never
get each other's page, even asking the same URL at the same moment.

The replicas share a PostgreSQL database (the test harness starts the server). On SQLite, where a single
server reads the counters in place on its event loop rather than from a worker thread, the same promises hold
for a change made by another process. The resources listed are records
of a stack of their own (``bulk``), written straight into the database; the expected pages are the tables
below, not anything the server computed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from nebctl.core.keys import Kind, ResourceKey
from nebctl.database.records import ResourceRecord
from nebctl.database.store import Store
from tests.integration.api.conftest import settings
from tests.support.databases import DatabaseServer
from tests.support.drills import Workspace
from tests.support.replicas import FAST_LEASE, ServerWorkspace
from tests.support.serving import Served, start_serve, vm_manifest, wait_for, write_manifests

V1 = "/api/v1"
TEAMS = {"team-a": ["a-1", "a-2", "a-3"], "team-b": ["b-1", "b-2"]}


def _vm(namespace: str, name: str, status: str = "running") -> ResourceRecord:
    spec = {"vcpu": 1, "memory": 2**30, "metadata": {"labels": {"team": namespace}}}
    return ResourceRecord(
        Kind.VIRTUAL_MACHINE, namespace, name, "bulk", desired=spec, applied=spec, status=status, generation=1
    )


@dataclass
class Replicas:
    servers: list[Served]
    workspace: Workspace
    tokens: dict[str, str]

    def store(self) -> AbstractContextManager[Store]:
        return self.workspace.store()

    def get(self, server: Served, user: str, **params: Any) -> httpx.Response:
        return get(server, self.tokens[user], **params)


def get(server: Served, token: str, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"http://127.0.0.1:{server.port}{V1}/resources", headers=headers, params=params, timeout=30)


def listed(response: httpx.Response) -> dict[str, str]:
    """``namespace/name`` → status of the bulk VMs of a page."""
    assert response.status_code == 200, response.text
    return {f"{d['namespace']}/{d['name']}": d["status"] for d in json.loads(response.text) if d["stack"] == "bulk"}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, postgresql_server: DatabaseServer) -> Iterator[Replicas]:
    # Several replicas need a database server (SQLite holds one): PostgreSQL, which the harness starts.
    root = tmp_path_factory.mktemp("caching")
    overrides = settings(root)
    # Probes an hour apart: observations raise the records' counter too, and would hide a write that did not.
    overrides["serve"] = {**overrides["serve"], **FAST_LEASE, "vm_interval": "1h", "host_interval": "1h"}
    url = postgresql_server.create_database(f"nebctl_api_cache_{os.getpid()}")
    workspace = ServerWorkspace(root, manifests=root / "manifests", stack="site", settings_overrides=overrides, url=url)
    write_manifests(workspace.manifests, [vm_manifest("web-1", host="h1")])
    tokens = {}
    with workspace.store() as store:
        store.save_resources([_vm(namespace, name) for namespace, names in TEAMS.items() for name in names])
        # admin sees everything; ann and ben have the same (no) groups but rules of their own, each denied the
        # other's namespace.
        store.create_user("admin", groups=["admins"])
        store.add_access_rule(subject_type="group", subject="admins", actions=["get"])
        for user, other in (("ann", "team-b"), ("ben", "team-a")):
            store.create_user(user)
            store.add_access_rule(subject_type="user", subject=user, actions=["get"])
            store.add_access_rule(effect="deny", subject_type="user", subject=user, actions=["get"], namespaces=[other])
        for name in ("admin", "ann", "ben"):
            tokens[name], _ = store.create_token(name, name="tests")
    servers = [
        start_serve(workspace, "-f", str(workspace.manifests), "--stack", "site", name=f"serve-{n}") for n in (1, 2)
    ]
    try:
        wait_for(lambda: servers[0].status().get("sync_status") == "synced", what="the first sync")
        yield Replicas(servers, workspace, tokens)
    finally:
        for server in servers:
            server.terminate()


def test_a_changed_record_is_in_the_next_page_of_every_replica(replicas: Replicas) -> None:
    with replicas.store() as store:
        store.save_resources([_vm("team-c", "c-1"), _vm("team-c", "c-2")])
    expected = {"team-c/c-1": "running", "team-c/c-2": "running"}

    def check(what: str) -> None:
        for server in replicas.servers:
            for _ in range(2):  # built once, then served again
                page = replicas.get(server, "admin", namespace="team-c")
                assert listed(page) == expected, what
                assert page.headers["x-total-count"] == str(len(expected)), what
                everything = listed(replicas.get(server, "admin"))
                assert {k: v for k, v in everything.items() if k.startswith("team-c/")} == expected, what

    check("written")
    steps: list[tuple[str, Callable[[Store], object], str, str | None]] = [
        ("changed", lambda s: s.save_resource(_vm("team-c", "c-1", status="stopped")), "team-c/c-1", "stopped"),
        ("added", lambda s: s.save_resource(_vm("team-c", "c-3")), "team-c/c-3", "running"),
        (
            "deleted",
            lambda s: s.delete_resource(ResourceKey(Kind.VIRTUAL_MACHINE, "team-c", "c-2")),
            "team-c/c-2",
            None,
        ),
    ]
    for what, write, key, status in steps:
        with replicas.store() as store:
            write(store)
        if status is None:
            del expected[key]
        else:
            expected[key] = status
        check(what)


def test_a_revoked_token_or_a_disabled_user_is_refused_at_the_next_request(replicas: Replicas) -> None:
    first, second = replicas.servers
    with replicas.store() as store:
        store.create_user("tia")
        store.add_access_rule(subject_type="user", subject="tia", actions=["get"])
        revoked, record = store.create_token("tia", name="to revoke")
        kept, _ = store.create_token("tia", name="to keep")
    for server in (first, second, first, second):
        assert get(server, revoked).status_code == 200
        assert get(server, kept).status_code == 200
    with replicas.store() as store:
        assert store.revoke_token(record.id)
    for server in (first, second):
        assert get(server, revoked).status_code == 401
        assert get(server, kept).status_code == 200
    with replicas.store() as store:
        store.update_user("tia", enabled=False)
    for server in (first, second):
        assert get(server, kept).status_code == 401
    with replicas.store() as store:
        store.update_user("tia", enabled=True)
    assert get(first, kept).status_code == 200
    with replicas.store() as store:
        assert store.delete_user("tia")
    for server in (first, second):
        assert get(server, kept).status_code == 401


def test_an_expired_token_is_refused_though_it_was_verified_before(replicas: Replicas) -> None:
    with replicas.store() as store:
        store.create_user("uma")
        store.add_access_rule(subject_type="user", subject="uma", actions=["get"])
        expires = store.now() + timedelta(seconds=2)
        token, _ = store.create_token("uma", name="short", expires_at=expires)
    for server in replicas.servers:
        assert get(server, token).status_code == 200
    with replicas.store() as store:
        wait = (expires - store.now()).total_seconds()
    time.sleep(max(0.0, wait) + 0.1)
    for server in replicas.servers:
        assert get(server, token).status_code == 401


def test_a_change_of_the_rules_or_of_the_groups_changes_what_is_seen_next(replicas: Replicas) -> None:
    team_a = {f"team-a/{name}" for name in TEAMS["team-a"]}
    team_b = {f"team-b/{name}" for name in TEAMS["team-b"]}
    with replicas.store() as store:
        store.create_user("cas", groups=["ops"])
        token, _ = store.create_token("cas", name="tests")
        store.add_access_rule(subject_type="group", subject="ops", actions=["get"])
        deny_b = store.add_access_rule(
            effect="deny", subject_type="group", subject="ops", actions=["get"], namespaces=["team-b"]
        )

    def seen() -> set[str] | int:
        pages = [get(server, token) for server in replicas.servers for _ in range(2)]
        if pages[0].status_code != 200:
            assert {page.status_code for page in pages} == {pages[0].status_code}
            return pages[0].status_code
        documents = [set(listed(page)) for page in pages]
        assert all(document == documents[0] for document in documents)
        return documents[0]

    # Records written by the other tests of this module (namespace team-c) are left out.
    def original(found: set[str] | int) -> set[str] | int:
        return found if isinstance(found, int) else found & (team_a | team_b)

    assert original(seen()) == team_a
    with replicas.store() as store:
        store.delete_access_rule(deny_b.id)
    assert original(seen()) == team_a | team_b
    with replicas.store() as store:
        store.add_access_rule(effect="deny", subject_type="user", subject="cas", actions=["get"], namespaces=["team-a"])
    assert original(seen()) == team_b
    with replicas.store() as store:
        store.update_user("cas", groups=[])
    assert seen() == 403  # no allow applies to cas any more: the listing as a whole is refused
    with replicas.store() as store:
        store.update_user("cas", groups=["ops"])
        store.add_access_rule(
            effect="deny", subject_type="group", subject="ops", actions=["get"], namespaces=["team-b"]
        )
    assert original(seen()) == set()


def test_callers_who_see_different_things_never_get_each_others_page(replicas: Replicas) -> None:
    with replicas.store() as store:
        namespaces = {r.key.namespace for r in store.list_resources()}
        everything = {f"{r.namespace}/{r.name}" for r in store.list_resources() if r.stack == "bulk"}
    assert {"team-a", "team-b"} <= namespaces
    # What each caller may see, by the rules written above (by name: ann and ben have the same groups).
    allowed = {
        "admin": everything,
        "ann": {key for key in everything if not key.startswith("team-b/")},
        "ben": {key for key in everything if not key.startswith("team-a/")},
    }
    assert allowed["ann"] != allowed["ben"] and allowed["ann"] and allowed["ben"]

    def ask(job: tuple[Served, str]) -> tuple[str, set[str]]:
        server, user = job
        return user, set(listed(replicas.get(server, user)))

    jobs = [(server, user) for _ in range(15) for server in replicas.servers for user in allowed]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, jobs))
    assert len(answers) == len(jobs)
    for user, seen in answers:
        assert seen == allowed[user], user


def test_on_sqlite_a_change_or_a_revocation_counts_from_the_next_repeated_request(tmp_path: Path) -> None:
    overrides = settings(tmp_path)
    overrides["serve"] = {**overrides["serve"], "vm_interval": "1h", "host_interval": "1h"}
    workspace = Workspace(tmp_path, manifests=tmp_path / "manifests", stack="site", settings_overrides=overrides)
    write_manifests(workspace.manifests, [vm_manifest("web-1", host="h1")])
    with workspace.store() as store:
        store.save_resources([_vm("team-a", name) for name in TEAMS["team-a"]])
        store.create_user("tia")
        store.add_access_rule(subject_type="user", subject="tia", actions=["get"])
        revoked, record = store.create_token("tia", name="to revoke")
        kept, _ = store.create_token("tia", name="to keep")
    server = start_serve(workspace, "-f", str(workspace.manifests), "--stack", "site")
    try:
        wait_for(lambda: server.status().get("sync_status") == "synced", what="the first sync")
        expected = {f"team-a/{name}": "running" for name in TEAMS["team-a"]}
        for _ in range(3):  # built, then repeated
            assert listed(get(server, revoked, namespace="team-a")) == expected
            assert listed(get(server, kept, namespace="team-a")) == expected
        with workspace.store() as store:  # another process, as the CLI
            store.save_resource(_vm("team-a", "a-2", status="stopped"))
        assert listed(get(server, kept, namespace="team-a")) == {**expected, "team-a/a-2": "stopped"}
        with workspace.store() as store:
            assert store.revoke_token(record.id)
        assert get(server, revoked, namespace="team-a").status_code == 401
        assert get(server, kept, namespace="team-a").status_code == 200
    finally:
        server.terminate()
