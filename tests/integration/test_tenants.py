"""One tenant (API key) never reads another's cached response or plan, and cannot ask for a
shared scope: the answer, the stream and the plan are kept per key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

import tests.policies.hawkeye_fakes  # noqa: F401  (registers the scripted planner)
from tests.servers import serve_gateway, write_catalog

KEYS = ("sk-tenant-a", "sk-tenant-b")
CATALOG = {
    "backends": {
        "echo": {"kind": "echo"},
        "planner": {"kind": "hawkeye-scripted", "pieces": ["Say", " it", " back."]},
    },
    "models": {
        "echo": {"policy": "direct", "backends": {"main": "echo"}},
        "hk": {"policy": "hawkeye", "backends": {"planner": "planner", "expander": "echo"}},
    },
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    catalog = write_catalog(tmp_path_factory.mktemp("tenants"), CATALOG)
    with serve_gateway(catalog, api_keys=list(KEYS)) as url:
        yield url


def call(url: str, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    response = httpx.post(url + path, json=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response


BODIES = {
    "chat": ("/v1/chat/completions", {"model": "echo"}),
    "stream": ("/v1/chat/completions", {"model": "echo", "stream": True}),
    "legacy": ("/v1/completions", {"model": "echo"}),
}


@pytest.mark.parametrize("kind", BODIES)
def test_a_cached_answer_is_the_tenants_own(gateway: str, kind: str) -> None:
    path, body = BODIES[kind]
    secret = f"tenant a's secret {uuid4().hex}"
    legacy = path == "/v1/completions"
    text = {"prompt": secret} if legacy else {"messages": [{"role": "user", "content": secret}]}
    body = {**body, **text, "temperature": 0}
    a, b = KEYS
    assert call(gateway, a, path, body).headers["x-tandem-cache"] == "miss"
    assert call(gateway, a, path, body).headers["x-tandem-cache"] == "hit"
    for same_body in (body, {**body, "user": a}):  # naming the other tenant changes nothing
        assert call(gateway, b, path, same_body).headers["x-tandem-cache"] == "miss"


def test_a_plan_is_the_tenants_own(gateway: str) -> None:
    a, b = KEYS
    body = {"model": "hk", "messages": [{"role": "user", "content": uuid4().hex}]}
    path = "/v1/chat/completions"
    assert call(gateway, a, path, body).json()["tandem"]["plan_cached"] is False
    assert call(gateway, b, path, body).json()["tandem"]["plan_cached"] is False  # A's exists
    assert call(gateway, b, path, body).json()["tandem"]["plan_cached"] is True  # B's own now
    assert call(gateway, a, path, body).json()["tandem"]["plan_cached"] is True
    other = {**body, "messages": [{"role": "user", "content": uuid4().hex}]}
    assert call(gateway, a, path, other).json()["tandem"]["plan_cached"] is False
    assert call(gateway, b, path, other).json()["tandem"]["plan_cached"] is False


@pytest.mark.parametrize(
    "tandem", [{"plan_cache_scope": "global"}, {"plan_cache_ttl": 2592000}, {"plan_cache": True}]
)
def test_a_tenant_cannot_ask_for_a_shared_or_longer_plan_cache(gateway: str, tandem: Any) -> None:
    body = {"model": "hk", "messages": [{"role": "user", "content": "hi"}], "tandem": tandem}
    response = httpx.post(
        gateway + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {KEYS[1]}"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "override_not_allowed"
