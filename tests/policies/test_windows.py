"""Every policy checks every model it will run against that model's context window before any
work starts, with `direct`'s 400: the error is raised when the request is made, so no model
has read a token of it (a policy's events are not started yet)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.backends.local import LocalBackend
from gateway.backends.openai_http import OpenAIBackend, OpenAIBackendConfig
from gateway.core.errors import InvalidRequest
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest
from gateway.policies.direct import DirectPolicy
from gateway.policies.hawkeye import HawkeyePolicy
from tests.policies.conftest import collab

WINDOW = 2048  # the tiny models' (tests/tiny.py)
#: about 5 tokens each in SmolLM2's chat template: 500 of them are over the tiny window
EMPTY_TURNS = [{"role": "user", "content": ""}] * 500


def chat(**fields: Any) -> ChatCompletionRequest:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    return ChatCompletionRequest.model_validate({**body, **fields})


def refused(error: pytest.ExceptionInfo[InvalidRequest], window: int = WINDOW) -> None:
    assert error.value.status == 400
    assert error.value.param == "max_tokens"
    assert error.value.code == "context_length_exceeded"
    assert f"exceeds the model's context of {window} tokens" in error.value.message


def test_direct_refuses_when_the_request_is_made(tiny_pair: list[LocalBackend]) -> None:
    policy = DirectPolicy("d", {"main": tiny_pair[0]})
    with pytest.raises(InvalidRequest) as error:
        policy.chat(chat(messages=EMPTY_TURNS), policy.parse_params({}))
    refused(error)


def test_collab_refuses_a_prompt_over_the_small_models_window(
    tiny_pair: list[LocalBackend],
) -> None:
    policy = collab(tiny_pair[0], tiny_pair[1])
    with pytest.raises(InvalidRequest) as error:
        policy.chat(chat(messages=EMPTY_TURNS, max_tokens=16), policy.parse_params({}))
    refused(error)


def test_collab_counts_the_answer_against_the_window(tiny_pair: list[LocalBackend]) -> None:
    policy = collab(tiny_pair[0], tiny_pair[1])
    params = policy.parse_params({"max_tokens": WINDOW})
    with pytest.raises(InvalidRequest) as error:
        policy.chat(chat(), params)  # the alias's default answer length does not fit
    refused(error)
    prompt = CompletionRequest(model="m", prompt=["Hi", "Hello"], max_tokens=WINDOW)
    with pytest.raises(InvalidRequest) as error:
        policy.complete(prompt, params)
    refused(error)


def test_collab_checks_the_large_model_too(tiny_pair: list[LocalBackend]) -> None:
    large = OpenAIBackend(
        "up", OpenAIBackendConfig(base_url="http://x", model="m", context_length=64)
    )
    policy = collab(tiny_pair[0], large)
    with pytest.raises(InvalidRequest) as error:
        policy.chat(
            chat(messages=[{"role": "user", "content": "Hi " * 40}], max_tokens=16),
            policy.parse_params({}),
        )
    refused(error, 64)


def test_hawkeye_checks_the_expander(tiny_pair: list[LocalBackend]) -> None:
    policy = HawkeyePolicy("h", {"planner": tiny_pair[1], "expander": tiny_pair[0]})
    with pytest.raises(InvalidRequest) as error:
        policy.chat(chat(max_tokens=WINDOW), policy.parse_params({"plan_max_tokens": 8}))
    refused(error)


def test_hawkeye_checks_the_planner(tiny_pair: list[LocalBackend]) -> None:
    policy = HawkeyePolicy("h", {"planner": tiny_pair[1], "expander": tiny_pair[0]})
    with pytest.raises(InvalidRequest) as error:
        # no max_tokens: the plan may take its whole budget, which with the prompt overflows
        policy.chat(chat(), policy.parse_params({"plan_max_tokens": WINDOW}))
    refused(error)


def test_an_http_model_is_checked_only_when_its_window_is_declared() -> None:
    def backend(**declared: Any) -> OpenAIBackend:
        return OpenAIBackend("up", OpenAIBackendConfig(base_url="http://x", model="m", **declared))

    long = chat(messages=[{"role": "user", "content": "x" * 64_000}])
    backend().chat(long)  # not started, never run: only the check would raise
    with pytest.raises(InvalidRequest) as error:
        backend(context_length=512).chat(long)
    refused(error, 512)
    backend(context_length=512).chat(chat(max_tokens=500))  # a lower bound never refuses what fits
    prompt = CompletionRequest(model="m", prompt=[[1] * 500], max_tokens=16)
    with pytest.raises(InvalidRequest):
        backend(context_length=512).complete(prompt)


def test_hawkeye_checks_the_expander_answering_without_a_plan(
    tiny_pair: list[LocalBackend],
) -> None:
    """420 empty turns fit as the transcript the planner and the expander read (about 1,750
    tokens), not in the chat template the expander reads when it answers alone (2,125), as
    it does after a planner timeout."""
    policy = HawkeyePolicy("h", {"planner": tiny_pair[1], "expander": tiny_pair[0]})
    params = policy.parse_params({"plan_max_tokens": 8})
    with pytest.raises(InvalidRequest) as error:
        policy.chat(chat(messages=EMPTY_TURNS[:420], max_tokens=8), params)
    refused(error)


def never_tokenised(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a prompt this long was tokenised")


def test_a_prompt_far_over_the_window_is_refused_before_it_is_tokenised(
    tiny_pair: list[LocalBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SmolLM2's longest token has 81 characters: 400k characters are at least 4,939 tokens,
    refused without the 0.5 s tokenising them would take, by each model's own path."""
    monkeypatch.setattr("gateway.policies.collab.chat_prompt", never_tokenised)
    monkeypatch.setattr("gateway.backends.local.chat_prompt", never_tokenised)
    monkeypatch.setattr("gateway.policies.collab.encode_prompt", never_tokenised)
    huge = chat(messages=[{"role": "user", "content": "word " * 80_000}], max_tokens=8)
    policies = [
        (DirectPolicy("d", {"main": tiny_pair[0]}), {}),
        (collab(tiny_pair[0], tiny_pair[1]), {}),
        (HawkeyePolicy("h", {"planner": tiny_pair[1], "expander": tiny_pair[0]}), {}),
    ]
    for policy, params in policies:
        with pytest.raises(InvalidRequest) as error:
            policy.chat(huge, policy.parse_params(params))
        refused(error)
        assert "has at least 49" in error.value.message  # hawkeye's prompts add a template
    prompt = CompletionRequest(model="m", prompt="word " * 80_000, max_tokens=8)
    monkeypatch.setattr(tiny_pair[0].runtime.tokenizer, "encode", never_tokenised)
    policy = collab(tiny_pair[0], tiny_pair[1])
    with pytest.raises(InvalidRequest):
        policy.complete(prompt, policy.parse_params({}))
