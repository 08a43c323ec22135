"""Property: whatever the body, its content type or its `tandem` overrides, no policy answers
5xx. One gateway serves `direct` (echo), `hawkeye` (echo planner and expander) and `collab` (two
tiny models) with declared overrides; generated requests reach both model routes of each."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_fuzz import FIELDS, check, json_values
from tests.servers import serve_gateway

ALIASES = ["echo", "hk", "co"]
ROUTES = ["/v1/chat/completions", "/v1/completions"]
OVERRIDE_KEYS = [
    "trigger", "threshold", "span", "draft", "upload_target", "router", "breaker_cooldown",
    "plan_max_tokens", "show_plan", "plan_cache_scope", "plan_cache_ttl", "policy", "role",
    "provenance", "cache", "bogus",
]  # fmt: skip
override_values = (
    st.sampled_from(["entropy", "top1", "never", "always", "learned", "direct", "collab", "x"])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-10, 10**6)
    | json_values
)
overrides = st.dictionaries(st.sampled_from(OVERRIDE_KEYS), override_values, max_size=4)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(ALIASES)},
    optional={
        **{k: v for k, v in FIELDS.items() if k != "model"},
        "tandem": overrides,
        "max_tokens": st.integers(-1, 12),
    },
)
CONTENT_TYPES = [
    "application/json", "application/vnd.api+json", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/json; charset=latin-1", "", None,
]  # fmt: skip
# JSON that Python reads and the JSON standard does not: NaN and infinities, as numbers anywhere
NON_STANDARD = [
    '{"model": "co", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    '{"model": "hk", "messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}',
    '{"model": "echo", "prompt": "hi", "max_tokens": -Infinity}',
    '{"model": "co", "prompt": "hi", "tandem": {"threshold": NaN}}',
    '{"model": "hk", "messages": [{"role": "user", "content": "hi"}], '
    '"tandem": {"plan_max_tokens": Infinity}}',
]


@pytest.fixture(scope="module")
def url(tiny_folders: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    small, large = tiny_folders
    tiny = {"kind": "transformers", "threads": 1}
    catalog = {
        "backends": {
            "echo": {"kind": "echo"},
            "small": {**tiny, "model": str(small)},
            "large": {**tiny, "model": str(large)},
        },
        "models": {
            "echo": {"policy": "direct", "backends": {"main": "echo"}},
            "hk": {
                "policy": "hawkeye",
                "backends": {"planner": "echo", "expander": "echo"},
                "overrides": {"plan_max_tokens": {"min": 1, "max": 64}, "show_plan": {}},
            },
            "co": {
                "policy": "collab",
                "backends": {"small": "small", "large": "large"},
                "params": {"max_tokens": 6, "draft": 2},
                "limits": {"max_tokens": 12, "max_n": 2},
                "overrides": {
                    "trigger": {"choices": ["entropy", "top1", "never", "always"]},
                    "threshold": {"min": 0, "max": 10},
                    "span": {},
                },
            },
        },
    }
    path = tmp_path_factory.mktemp("fuzz") / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    with serve_gateway(path) as served:
        yield served


@pytest.fixture(scope="module")
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client


def resident_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        line = next(row for row in status if row.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, route=st.sampled_from(ROUTES))
def test_no_policy_answers_5xx_whatever_the_body(
    http: httpx.Client, body: dict[str, Any], route: str
) -> None:
    # json.dumps writes NaN and Infinity, which httpx's json= refuses: the server must meet them
    content = json.dumps(body)
    check(http.post(route, content=content, headers={"content-type": "application/json"}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=bodies,
    route=st.sampled_from(ROUTES),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_every_content_type_is_served_or_refused_not_5xx(
    http: httpx.Client, body: dict[str, Any], route: str, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = http.post(
        route,
        content=json.dumps(body),
        headers=headers,  # NaN and Infinity included
    )
    check(response)
    json_type = content_type is not None and content_type.split(";")[0].endswith(("/json", "+json"))
    if not json_type:
        assert response.status_code == 415


@pytest.mark.parametrize("raw", NON_STANDARD)
@pytest.mark.parametrize("route", ROUTES)
def test_nan_and_infinity_are_refused_not_5xx(http: httpx.Client, raw: str, route: str) -> None:
    response = http.post(route, content=raw, headers={"content-type": "application/json"})
    check(response)
    assert response.status_code == 400


def load_pattern(i: int) -> tuple[str, dict[str, Any]]:
    """Request `i` of a cycle over the aliases, routes, streaming and a few refusals."""
    alias, route = ALIASES[i % 3], ROUTES[(i // 3) % 2]
    body: dict[str, Any] = {"model": alias, "max_tokens": 4, "stream": bool(i % 2)}
    if route == ROUTES[0]:
        body["messages"] = [{"role": "user", "content": f"request {i} " + "x" * (i % 50)}]
    else:
        body["prompt"] = f"request {i}"
    if i % 7 == 0:
        body["tandem"] = {"bogus": i}  # a refusal
    return route, body


def test_the_fuzz_leaves_memory_bounded(http: httpx.Client) -> None:
    """After a warm-up, 300 more requests across the policies grow the process by less than
    128 MiB: each body is small, so growth past that is state kept per request."""
    for i in range(30):
        route, body = load_pattern(i)
        http.post(route, json=body)
    before = resident_mib()
    for i in range(300):
        route, body = load_pattern(i)
        check(http.post(route, json=body))
    assert resident_mib() - before < 128
