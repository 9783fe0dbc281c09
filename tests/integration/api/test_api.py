"""The API of a real ``nebctl serve``, over HTTP with httpx: every endpoint, authentication by token, by user
and password and by login, the access rules over HTTP (deny by default, a deny winning), plans of posted
manifests (compared with ``nebctl diff -o json`` on the same files), syncs, events paged and followed, body
limits, CORS, failed logins slowed, and no secret in any response, event or log line."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.integration.api.conftest import PASSWORDS, Api, api, as_json, assert_no_secret
from tests.support.serving import wait_for

__all__ = ["api"]

V1 = "/api/v1"
READS = [
    "/stacks",
    "/resources",
    "/resources?kind=vm",
    "/resources/vm/web-1",
    "/hosts",
    "/applies",
    "/applies/1",
    "/events",
    "/whoami",
    "/openapi.json",
]
WRITES = ["/plans", "/syncs", "/logout"]


def _same_failure(responses: list[httpx.Response]) -> None:
    assert {r.status_code for r in responses} == {401}
    assert {r.text for r in responses} == {json.dumps({"detail": "authentication failed"}, separators=(",", ":"))}
    assert all("Bearer" in r.headers["www-authenticate"] for r in responses)


def test_health_readiness_and_metrics_need_no_authentication(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert api.get(path, user=None).status_code == 200


def test_every_api_call_needs_authentication(api: Api) -> None:
    with httpx.Client(base_url=api.base, timeout=30) as client:
        for path in READS:
            response = client.get(V1 + path)
            assert response.status_code == 401, path
            assert response.json() == {"detail": "authentication required"}
        for path in WRITES:
            assert client.post(V1 + path, json={}).status_code == 401, path
        bad_tokens = [
            client.get(V1 + "/stacks", headers={"Authorization": header})
            for header in ("Bearer nbt_" + "x" * 43, "Bearer nope", "Token abc", "Basic !!!not-base64")
        ]
    _same_failure(bad_tokens)


def test_bearer_token_and_basic_authentication(api: Api) -> None:
    assert as_json(api.get(V1 + "/whoami", user="alice")) == {"user": "alice", "groups": ["ops"], "driver": "builtin"}
    with httpx.Client(base_url=api.base, timeout=30, auth=("bob", PASSWORDS["bob"])) as client:
        assert client.get(V1 + "/whoami").json() == {"user": "bob", "groups": [], "driver": "builtin"}


def test_failures_do_not_tell_whether_a_user_exists(api: Api) -> None:
    responses = []
    for user, password in (("alice", "wrong"), ("nobody", "whatever"), ("dora", PASSWORDS["dora"])):
        responses.append(api.post(V1 + "/login", user=None, json={"user": user, "password": password}))
        time.sleep(1.1)  # past the slowing of the address's failed logins (at most 1 s here)
    _same_failure(responses)
    with httpx.Client(base_url=api.base, timeout=30, auth=("lee", "x")) as client:  # exec user, no program
        _same_failure([client.get(V1 + "/whoami")])
    time.sleep(1.1)


def test_login_logout_and_the_login_event(api: Api) -> None:
    response = api.post(V1 + "/login", user=None, json={"user": "alice", "password": PASSWORDS["alice"]})
    document = as_json(response)
    token = document["token"]
    assert token.startswith("nbt_") and document["user"] == "alice" and document["groups"] == ["ops"]
    with httpx.Client(base_url=api.base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get(V1 + "/whoami").json()["user"] == "alice"
        assert client.post(V1 + "/logout").json() == {"revoked": document["token_id"]}
        assert client.get(V1 + "/whoami").status_code == 401
    logins = [e for e in api.served.events("api.login") if e.data.get("token") == document["token_id"]]
    assert len(logins) == 1 and logins[0].data["user"] == "alice" and logins[0].data["address"] == "127.0.0.1"
    assert token not in json.dumps(logins[0].data) + logins[0].message
    assert api.served.events("api.logout")[-1].data["user"] == "alice"


def test_failed_logins_are_slowed(api: Api) -> None:
    for _ in range(3):  # each after the longest delay (1 s here): checked, and counted
        time.sleep(1.1)
        assert api.post(V1 + "/login", user=None, json={"user": "bob", "password": "bad"}).status_code == 401
    right = {"user": "bob", "password": PASSWORDS["bob"]}
    slowed = api.post(V1 + "/login", user=None, json=right)
    assert slowed.status_code == 429 and slowed.json()["detail"].startswith("too many failed logins")
    wait = int(slowed.headers["retry-after"])
    assert 1 <= wait <= 1  # 1 s at most here (access.login_max_delay), rounded up to whole seconds
    time.sleep(wait + 0.05)
    assert api.post(V1 + "/login", user=None, json=right).status_code == 200


def _names(documents: list[dict[str, Any]]) -> set[str]:
    return {f"{d['namespace']}/{d['kind']}/{d['name']}" for d in documents}


def test_resources_filtered_and_authorized(api: Api) -> None:
    everything = _names(as_json(api.get(V1 + "/resources")))
    assert {"default/VirtualMachine/web-1", "default/VirtualMachine/web-2", "secret/VirtualMachine/vault"} <= everything
    assert len(everything) == 10  # 2 hosts, 1 datastore, 2 images, 2 networks, 3 VMs
    vms = as_json(api.get(V1 + "/resources", params={"kind": "vm"}))
    assert _names(vms) == {
        "default/VirtualMachine/web-1",
        "default/VirtualMachine/web-2",
        "secret/VirtualMachine/vault",
    }
    assert _names(as_json(api.get(V1 + "/resources", params={"kind": "vm", "namespace": "secret"}))) == {
        "secret/VirtualMachine/vault"
    }
    assert as_json(api.get(V1 + "/resources", params={"stack": "other"})) == []
    # alice's group may get everything but namespace secret: the listing leaves it out, the record is refused.
    assert _names(as_json(api.get(V1 + "/resources", user="alice"))) == everything - {
        "secret/VirtualMachine/vault",
        "secret/Image/base",
        "secret/Network/lan",
    }
    refused = api.get(V1 + "/resources/vm/vault", user="alice", params={"namespace": "secret"})
    assert refused.status_code == 403 and "denied by rule 4" in refused.json()["detail"]
    # bob may only get hosts (everyone's rule).
    assert api.get(V1 + "/resources", user="bob").status_code == 403
    assert _names(as_json(api.get(V1 + "/resources", user="bob", params={"kind": "host"}))) == {
        "default/Host/h1",
        "default/Host/h2",
    }
    assert [h["name"] for h in as_json(api.get(V1 + "/hosts", user="bob"))] == ["h1", "h2"]
    assert api.get(V1 + "/resources/vm/nothing").status_code == 404
    assert api.get(V1 + "/resources/vm/nothing", user="bob").status_code == 403  # existence is not revealed
    assert api.get(V1 + "/resources/blob/x").status_code == 404
    assert api.get(V1 + "/resources", params={"label": "=x"}).status_code == 422


def test_one_resource_with_live_status_and_last_actions(api: Api) -> None:
    web = as_json(api.get(V1 + "/resources/vm/web-1"))
    assert (web["kind"], web["name"], web["stack"], web["status"], web["host"]) == (
        "VirtualMachine",
        "web-1",
        "site",
        "running",
        "h1",
    )
    assert web["observed"]["state"] == "running"
    assert web["spec"]["vcpu"] == 1 and web["spec"]["memory"] == 512 * 2**20
    assert {a["operation"] for a in web["last_actions"]} >= {"deploy"}
    assert all(a["resource"] == "vm/web-1" and a["state"] == "succeeded" for a in web["last_actions"])
    assert web["health"]["health"] == "healthy"


def test_stacks_hosts_applies(api: Api) -> None:
    stacks = as_json(api.get(V1 + "/stacks"))
    assert [(s["stack"], s["sync_status"], s["last_apply"]) for s in stacks] == [("site", "synced", 1)]
    hosts = {h["name"]: h for h in as_json(api.get(V1 + "/hosts"))}
    assert set(hosts) == {"h1", "h2"}
    assert hosts["h1"]["vms"] == 2 and hosts["h1"]["cpu"]["total"] == 32 and hosts["h1"]["cpu"]["allocated"] == 2
    assert hosts["h2"]["vms"] == 1 and hosts["h2"]["memory"]["allocated"] == 512 * 2**20
    applies = as_json(api.get(V1 + "/applies"))
    assert applies[-1]["id"] == 1 and applies[-1]["state"] == "succeeded" and applies[-1]["stack"] == "site"
    detail = as_json(api.get(V1 + "/applies/1"))
    deploys = sorted(a["resource"] for a in detail["actions"] if a["operation"] == "deploy")
    assert deploys == ["secret/vm/vault", "vm/web-1", "vm/web-2"]
    assert all(a["state"] == "succeeded" and a["started_at"] and a["finished_at"] for a in detail["actions"])
    assert api.get(V1 + "/applies/999").status_code == 404
    assert api.get(V1 + "/applies/1", user="bob").status_code == 403


def test_events_paged_and_authorized(api: Api) -> None:
    first = as_json(api.get(V1 + "/events", params={"after": 0, "limit": 3}))
    assert [e["id"] for e in first["events"]] == [1, 2, 3] and first["next"] == 3
    second = as_json(api.get(V1 + "/events", params={"after": 3, "limit": 3}))
    assert [e["id"] for e in second["events"]] == [4, 5, 6]
    everything = as_json(api.get(V1 + "/events", params={"after": 0, "limit": 10000}))["events"]
    assert any((e["resource"] or "").startswith("secret/") for e in everything)
    alices = as_json(api.get(V1 + "/events", user="alice", params={"after": 0, "limit": 10000}))["events"]
    assert alices and not any((e["resource"] or "").startswith("secret/") for e in alices)
    assert api.get(V1 + "/events", user="bob").status_code == 403


def test_events_followed_as_server_sent_events(api: Api) -> None:
    with api.client("admin") as client, client.stream("GET", V1 + "/events", params={"follow": 1}) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith(": following")
        assert api.post(V1 + "/syncs", user="alice", json={"stack": "site"}).status_code == 202
        seen: list[str] = []
        for line in lines:
            seen.append(line)
            if line.startswith("data: ") and json.loads(line[6:])["type"] == "api.sync":
                break
    event = json.loads(seen[-1][6:])
    assert seen[-2] == "event: api.sync" and seen[-3] == f"id: {event['id']}"
    assert event["data"]["user"] == "alice" and event["stack"] == "site"


def test_syncs(api: Api) -> None:
    response = api.post(V1 + "/syncs", user="alice", json={})
    assert response.status_code == 202 and response.json()["stack"] == "site"
    requested = response.json()["requested_at"]

    def synced() -> bool:
        status = as_json(api.get(V1 + "/stacks"))[0]
        return status["sync_requested_at"] is None and status["last_sync_at"] >= requested

    wait_for(synced, what="the requested sync")
    assert api.post(V1 + "/syncs", user="bob", json={"stack": "site"}).status_code == 403
    assert api.post(V1 + "/syncs", json={"stack": "elsewhere"}).status_code == 404
    assert api.post(V1 + "/syncs", json={"stack": 5}).status_code == 422
    syncs = api.served.events("api.sync")
    assert syncs[-1].data["user"] == "alice" and syncs[-1].data["driver"] == "builtin"


def _files(api: Api) -> list[dict[str, str]]:
    return [{"name": path.name, "content": path.read_text()} for path in sorted(api.workspace.manifests.glob("*.yaml"))]


def test_plans_are_diff_json(api: Api) -> None:
    files = _files(api)
    for f in files:
        if f["name"] == "10-vms.yaml":
            f["content"] = f["content"].replace("memory: 512Mi", "memory: 1Gi", 1)  # web-1 grows
    changed = api.workspace.root / "changed"
    changed.mkdir(exist_ok=True)
    for f in files:
        (changed / f["name"]).write_text(f["content"])
    plan = as_json(api.post(V1 + "/plans", json={"files": files, "stack": "site"}))
    diff = api.workspace.run("diff", "-f", str(changed), "--stack", "site", "-o", "json")
    assert diff.returncode == 2, diff.stderr
    expected = json.loads(diff.stdout)
    assert plan["format_version"] == "1" and plan["has_changes"] is True
    assert plan["summary"] == expected["summary"] == {"add": 0, "change": 1, "destroy": 0}
    assert plan["resource_changes"] == expected["resource_changes"]
    changes = [(c["address"], c["type"]) for c in plan["resource_changes"] if c["type"] != "no-op"]
    assert changes == [("vm/web-1", "update")]
    yaml_plan = api.post(
        V1 + "/plans",
        params={"stack": "site"},
        content=files[0]["content"],
        headers={"Content-Type": "application/yaml"},
    )
    assert yaml_plan.status_code == 200 and yaml_plan.json()["stack"] == "site"
    assert api.post(V1 + "/plans", user="bob", json={"files": files}).status_code == 403
    assert_no_secret(api, json.dumps(plan))


BAD = """\
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {name: bad-1}
spec:
  vcpu: 0
  memory: 512Mi
"""


def test_invalid_manifests_give_every_error(api: Api) -> None:
    files = [{"name": "one.yaml", "content": BAD}, {"name": "two.yaml", "content": "kind: Nope\n"}]
    response = api.post(V1 + "/plans", json={"files": files})
    assert response.status_code == 422
    errors = response.json()["errors"]
    located = [(e["file"], e["line"], e["column"], e["resource"]) for e in errors]
    # vcpu is on line 5, its value at column 9; the second file's two problems are at its first line.
    assert ("one.yaml", 5, 9, "VirtualMachine/bad-1") in located
    assert [loc for loc in located if loc[0] == "two.yaml"] == [("two.yaml", 1, 1, None), ("two.yaml", 1, 7, None)]
    assert any("vcpu" in e["message"] for e in errors) and any("unknown kind 'Nope'" in e["message"] for e in errors)
    bodies: list[Any] = [{"files": []}, {"files": [{"name": "x"}]}, {"nope": 1}, [1, 2]]
    for body in bodies:
        assert api.post(V1 + "/plans", json=body).status_code == 422
    assert (
        api.post(V1 + "/plans", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 422
    )


def test_group_quota_refuses_a_plan_over_http(api: Api) -> None:
    from nebctl.database.records import QuotaRecord

    with api.workspace.store() as store:
        store.set_quota(QuotaRecord("group", "ops", vms=2))
    try:
        response = api.post(V1 + "/plans", user="alice", json={"files": _files(api)})
        assert response.status_code == 409
        assert response.json()["problems"] == [
            "group ops: quota exceeded: VMs: limit 2, in use 0 by other stacks, requested 3 by stack site"
        ]
        assert api.post(V1 + "/plans", user="admin", json={"files": _files(api)}).status_code == 200  # not in ops
    finally:
        with api.workspace.store() as store:
            store.delete_quota("group", "ops")


def test_body_limits(api: Api) -> None:
    big = json.dumps({"files": [{"name": "a.yaml", "content": "#" * 70_000}]})
    response = api.post(V1 + "/plans", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "larger than 65536 bytes" in response.json()["detail"]

    def chunks() -> Any:  # no Content-Length: the limit is enforced on the bytes as they arrive
        for _ in range(20):
            yield b"x" * 8192

    streamed = api.post(V1 + "/plans", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413


def test_no_cors_unless_configured(api: Api) -> None:
    response = api.get(V1 + "/stacks", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    preflight = httpx.options(
        api.base + V1 + "/stacks",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_openapi(api: Api) -> None:
    document = as_json(api.get(V1 + "/openapi.json"))
    paths = set(document["paths"])
    for path in (*READS[:3], "/resources/{kind}/{name}", "/applies/{apply_id}", "/plans", "/syncs", "/login"):
        if "?" not in path:
            assert V1 + path in paths
    assert V1 + "/webhooks/git" in paths


def test_no_secret_in_any_response_event_or_log(api: Api) -> None:
    texts = [api.get(V1 + path).text for path in READS]
    texts += [
        api.get(V1 + "/resources/vm/web-2").text,
        api.get(V1 + "/events", params={"after": 0, "limit": 10000}).text,
    ]
    assert "cloudInit" in texts[-2] or "userData" in texts[-2] or '"spec"' in texts[-2]
    with api.workspace.store() as store:
        events = store.list_events(limit=100000)
    texts += [json.dumps(e.data) + e.message for e in events]
    texts.append(api.served.output_all())
    for text in texts:
        assert_no_secret(api, text)
