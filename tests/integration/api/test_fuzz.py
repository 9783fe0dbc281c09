"""Random requests (paths under the API and beside it, methods, headers, bodies), authenticated or not, against
a real ``nebctl serve``: the server never answers 500 and never shows a traceback, whatever it is sent."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.api.conftest import Api, api

__all__ = ["api"]

SEGMENTS = [
    "api", "v1", "stacks", "resources", "vm", "host", "web-1", "hosts", "applies", "1", "0", "-1",
    "99999999999999999999", "events", "plans", "syncs", "login", "logout", "whoami", "webhooks", "git", "openapi.json",
    "healthz", "readyz",
    "metrics", "..", "%00", "%ff", "é", "a" * 300, "",
]  # fmt: skip
NAMES = [
    "Authorization", "Content-Type", "X-Hub-Signature-256", "X-Gitlab-Token", "X-Gitea-Signature", "Last-Event-ID",
    "Accept", "Origin", "Cookie",
]  # fmt: skip
QUERY = st.dictionaries(
    st.sampled_from(["kind", "namespace", "stack", "label", "after", "limit", "follow", "name"]),
    st.one_of(st.text(max_size=40), st.integers(-(2**70), 2**70).map(str)),
    max_size=4,
)
# Printable ASCII without surrounding spaces: what HTTP lets a client send at all.
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(str.strip)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "Authorization",
            "Content-Type",
            "X-Hub-Signature-256",
            "X-Gitlab-Token",
            "X-Gitea-Signature",
            "Last-Event-ID",
            "Accept",
            "Origin",
            "Cookie",
        ]
    ),
    HEADER_VALUES,
    max_size=4,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode()),
    st.just(json.dumps({"files": [{"name": "a.yaml", "content": "kind: VirtualMachine\nspec: [\n"}]}).encode()),
    st.just(json.dumps({"user": "admin", "password": "x" * 5000}).encode()),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    segments=st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5),
    query=QUERY,
    headers=HEADERS,
    body=BODIES,
    who=st.sampled_from([None, "admin", "bob"]),
)
def test_random_requests_never_fail_the_server(
    api: Api,
    method: str,
    segments: list[str],
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    who: str | None,
) -> None:
    if who is not None and "Authorization" not in headers:
        headers = {**headers, "Authorization": f"Bearer {api.tokens[who]}"}
    if query.get("follow"):
        query = {**query, "follow": "0"}  # a followed stream never ends by itself
    path = "/" + "/".join(segments)
    with httpx.Client(base_url=api.base, timeout=30) as client:
        response = client.request(method, path, params=query, headers=headers, content=body)
    assert response.status_code < 500, (method, path, query, headers, body, response.status_code, response.text)
    assert "Traceback" not in response.text and 'File "' not in response.text
