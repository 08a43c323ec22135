"""Property: no generated request body makes the gateway answer 5xx or break the envelope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "bogus"])},
    optional={"content": st.text(max_size=30) | json_values, "name": json_values},
)
FIELDS = {
    "model": st.sampled_from(["echo", "missing"]) | json_values,
    "messages": st.lists(message, max_size=3) | json_values,
    "prompt": st.text(max_size=20) | st.lists(st.integers(-5, 70000), max_size=5) | json_values,
    "stream": st.booleans() | json_values,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values,
    "max_tokens": st.integers(-3, 300) | json_values,
    "max_completion_tokens": st.integers(-3, 300),
    "temperature": st.floats(-1, 3) | json_values,
    "top_p": st.floats(-1, 2),
    "n": st.integers(-1, 5) | json_values,
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6) | json_values,
    "seed": st.integers() | json_values,
    "logprobs": st.booleans() | st.integers(-1, 30) | json_values,
    "top_logprobs": st.integers(-1, 30),
    "echo": st.booleans() | json_values,
    "tools": json_values,
    "tandem": st.fixed_dictionaries(
        {}, optional={"policy": json_values, "role": json_values, "provenance": json_values}
    )
    | json_values,
    "anything_else": json_values,
}
bodies = st.fixed_dictionaries({}, optional=FIELDS) | json_values


@pytest.fixture(scope="module")
def http(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=10) as client:
        yield client


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str)
        assert error["type"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_chat_never_5xx(http: httpx.Client, body: Any) -> None:
    check(http.post("/v1/chat/completions", json=body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_completions_never_5xx(http: httpx.Client, body: Any) -> None:
    check(http.post("/v1/completions", json=body))
