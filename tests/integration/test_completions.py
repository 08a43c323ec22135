"""`/v1/completions`: every prompt form, logprobs as an int, echo and vLLM's extensions."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.servers import Upstream


def test_string_prompt_through_the_sdk(client: OpenAI, upstream: Upstream) -> None:
    tag = uuid.uuid4().hex
    result = client.completions.create(
        model="relay",
        prompt=f"say {tag}",
        max_tokens=3,
        logprobs=2,
        echo=True,
        extra_body={
            "fake": {"chunks": 3},
            "top_k": 4,
            "prompt_logprobs": 1,
            "return_tokens_as_token_ids": True,
        },
    )
    assert result.object == "text_completion"
    assert result.model == "relay"
    assert result.choices[0].text == "w0 w1 w2"
    body = upstream.find(tag).body
    assert body["logprobs"] == 2
    assert body["echo"] is True
    assert body["top_k"] == 4
    assert body["prompt_logprobs"] == 1
    assert body["return_tokens_as_token_ids"] is True


@pytest.mark.parametrize(
    "prompt",
    ["a b", ["a b", "c"], [1, 2, 3], [[1, 2], [3]]],
    ids=["string", "strings", "token-ids", "token-id-lists"],
)
def test_every_prompt_form_is_accepted_and_passed_on(
    gateway_url: str, upstream: Upstream, prompt: Any
) -> None:
    tag = uuid.uuid4().hex
    response = httpx.post(
        gateway_url + "/v1/completions", json={"model": "relay", "prompt": prompt, "user": tag}
    )
    assert response.status_code == 200
    assert upstream.find(tag).body["prompt"] == prompt


@pytest.mark.parametrize(
    "prompt",
    [[], [[]], [1, "a"], [-1], 3, None, [1.5]],
    ids=["empty", "empty-ids", "mixed", "negative", "int", "null", "float"],
)
def test_malformed_prompts_are_400(gateway_url: str, prompt: Any) -> None:
    response = httpx.post(
        gateway_url + "/v1/completions", json={"model": "relay", "prompt": prompt}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"


def test_echo_model_completes_each_prompt_n_times(client: OpenAI) -> None:
    result = client.completions.create(model="echo", prompt=["one two", "three"], n=2)
    assert [(c.index, c.text) for c in result.choices] == [
        (0, "one two"),
        (1, "one two"),
        (2, "three"),
        (3, "three"),
    ]


def test_logprobs_above_the_limit_are_400(gateway_url: str) -> None:
    response = httpx.post(
        gateway_url + "/v1/completions", json={"model": "relay", "prompt": "x", "logprobs": 21}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "logprobs"
