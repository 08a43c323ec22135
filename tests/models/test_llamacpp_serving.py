"""Chat and /v1/completions on llama.cpp through the real app, with the official SDK as client."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from tests.models.conftest import LLAMA_CPP_MISSING

pytest.importorskip("llama_cpp", reason=LLAMA_CPP_MISSING)

from openai import AsyncOpenAI, BadRequestError, OpenAI

from gateway.backends.local import LocalBackend
from gateway.backends.sessions import Stop

TEXT = "The quick brown fox jumps over the lazy dog. Paris is the capital of"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
#: the same computation on the same KV cell layout (the gateway keeps no pooled sequences)
SAME = 1e-4


@pytest.fixture(scope="module")
def sdk(llama_gateway: tuple[str, FastAPI]) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{llama_gateway[0]}/v1", api_key="unused", max_retries=0) as client:
        yield client


def backend(llama_gateway: tuple[str, FastAPI]) -> LocalBackend:
    found = llama_gateway[1].state.tandem.router.backends["llama"]
    assert isinstance(found, LocalBackend)
    return found


async def test_chat_streams_the_sessions_greedy_text_and_cuts_it_at_a_stop(
    llama_gateway: tuple[str, FastAPI],
) -> None:
    llama = backend(llama_gateway)
    text = llama.tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    async with await llama.open_session(
        llama.tokenizer.encode(text, add_special_tokens=False)
    ) as s:
        expected = llama.tokenizer.decode((await s.generate(12, Stop(ids=llama.eos_ids))).ids)
    async with AsyncOpenAI(base_url=f"{llama_gateway[0]}/v1", api_key="unused") as client:
        stream = await client.chat.completions.create(
            model="llama", messages=QUESTION, max_tokens=12, temperature=0, stream=True
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert streamed == expected
        stop = expected.split()[1]
        cut = await client.chat.completions.create(
            model="llama", messages=QUESTION, max_tokens=12, temperature=0, stop=[stop]
        )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == expected[: expected.index(stop)]


def test_chat_serves_n_with_logprobs(sdk: OpenAI) -> None:
    many = sdk.chat.completions.create(
        model="llama",
        messages=QUESTION,
        max_tokens=6,
        n=2,
        seed=1,
        temperature=1.0,
        logprobs=True,
        top_logprobs=2,
    )
    assert [c.index for c in many.choices] == [0, 1]
    content = many.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content
    assert all(len(t.top_logprobs) == 2 for t in content)
    assert all(math.isfinite(t.logprob) and t.logprob <= 0 for t in content)


def test_a_seed_repeats_a_sampled_answer(sdk: OpenAI) -> None:
    def sampled(seed: int) -> list[str]:
        answer = sdk.completions.create(
            model="llama", prompt=TEXT, max_tokens=16, temperature=1.2, seed=seed, n=2
        )
        return [c.text for c in answer.choices]

    first = sampled(7)
    assert sampled(7) == first
    assert first[0] != first[1]  # choice j samples with seed + j
    assert sampled(8) != first


async def test_token_id_prompts_logprobs_and_stop_match_the_session(
    llama_gateway: tuple[str, FastAPI],
) -> None:
    llama = backend(llama_gateway)
    prompt = llama.tokenizer.encode(TEXT)
    async with AsyncOpenAI(base_url=f"{llama_gateway[0]}/v1", api_key="unused") as client:
        answer = await client.completions.create(
            model="llama",
            prompt=prompt,
            max_tokens=8,
            temperature=0,
            logprobs=5,
            extra_body={"return_tokens_as_token_ids": True},
        )
    logprobs: Any = answer.choices[0].logprobs
    async with await llama.open_session(prompt) as session:
        span = await session.generate(8, Stop(ids=llama.eos_ids), k=5)
    assert logprobs.tokens == [f"token_id:{i}" for i in span.ids]
    assert logprobs.token_logprobs == pytest.approx(span.logprobs, abs=SAME)
    for wire, choice in zip(logprobs.top_logprobs, span.tokens, strict=True):
        assert wire == pytest.approx({f"token_id:{i}": lp for i, lp in choice.top}, abs=SAME)
    text = llama.tokenizer.decode(span.ids)
    assert answer.choices[0].text == text
    stop = text.strip().split()[0]
    async with AsyncOpenAI(base_url=f"{llama_gateway[0]}/v1", api_key="unused") as client:
        cut = await client.completions.create(
            model="llama", prompt=prompt, max_tokens=8, temperature=0, stop=[stop]
        )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[: text.index(stop)]


async def test_echo_with_max_tokens_zero_scores_the_prompt(
    llama_gateway: tuple[str, FastAPI],
) -> None:
    llama = backend(llama_gateway)
    prompt = llama.tokenizer.encode(TEXT)
    async with AsyncOpenAI(base_url=f"{llama_gateway[0]}/v1", api_key="unused") as client:
        answer = await client.completions.create(
            model="llama",
            prompt=prompt,
            max_tokens=0,
            echo=True,
            logprobs=1,
            extra_body={"return_tokens_as_token_ids": True},
        )
    choice: Any = answer.choices[0]
    assert choice.text == TEXT
    async with await llama.open_session(prompt[:1]) as session:
        scores = await session.score(prompt[1:], k=1)
    assert choice.logprobs.tokens == [f"token_id:{i}" for i in prompt]
    assert choice.logprobs.token_logprobs[0] is None
    assert choice.logprobs.token_logprobs[1:] == pytest.approx(
        [s.logprob for s in scores], abs=SAME
    )
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 0


async def test_concurrent_requests_each_get_their_own_answer(
    llama_gateway: tuple[str, FastAPI],
) -> None:
    prompts = [TEXT, "Once upon a time", "def fib(n):", "1, 2, 3, 4,", "Dear Sir,"]
    async with AsyncOpenAI(base_url=f"{llama_gateway[0]}/v1", api_key="unused") as client:

        async def greedy(prompt: str) -> str:
            answer = await client.completions.create(
                model="llama", prompt=prompt, max_tokens=12, temperature=0
            )
            return answer.choices[0].text

        alone = [await greedy(p) for p in prompts]
        together = await asyncio.gather(*(greedy(p) for p in prompts))
    assert list(together) == alone
    assert len(set(alone)) == len(prompts)


@pytest.mark.parametrize(
    ("endpoint", "field", "value"),
    [
        ("completions", "suffix", "!"),
        ("completions", "best_of", 3),
        ("completions", "logit_bias", {"42": 5}),
        ("completions", "presence_penalty", 0.5),
        ("completions", "frequency_penalty", 0.5),
        ("chat", "logit_bias", {"42": 5}),
        ("chat", "tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        ("chat", "response_format", {"type": "json_object"}),
    ],
)
def test_a_field_it_cannot_honour_is_a_400_naming_it(
    sdk: OpenAI, endpoint: str, field: str, value: Any
) -> None:
    def ask() -> object:
        if endpoint == "chat":
            return sdk.chat.completions.create(
                model="llama", messages=QUESTION, max_tokens=2, extra_body={field: value}
            )
        return sdk.completions.create(
            model="llama", prompt=TEXT, max_tokens=2, extra_body={field: value}
        )

    with pytest.raises(BadRequestError) as caught:
        ask()
    body: Any = caught.value.body
    assert body["param"] == field
    assert body["code"] == "unsupported_field"
    assert field in body["message"]
    assert "llamacpp" in body["message"]


def test_a_prompt_longer_than_the_context_is_a_400(sdk: OpenAI) -> None:
    with pytest.raises(BadRequestError) as caught:
        sdk.completions.create(model="llama", prompt=[1] * 4000, max_tokens=200)
    body: Any = caught.value.body
    assert body["param"] == "max_tokens"
    assert "context of 4096 tokens" in body["message"]
