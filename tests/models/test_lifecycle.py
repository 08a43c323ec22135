"""Serving a local model: sessions always closed, memory flat, bad requests refused clearly."""

from __future__ import annotations

import asyncio
import gc

import httpx
import psutil
import pytest
from fastapi import FastAPI

from gateway.backends.local import LocalBackend

PROMPT = "Once upon a time"


def tiny_of(app: FastAPI) -> LocalBackend:
    backend = app.state.tandem.router.backends["tiny"]
    assert isinstance(backend, LocalBackend)
    return backend


async def wait_closed(backend: LocalBackend, seconds: float = 10.0) -> None:
    for _ in range(int(seconds * 20)):
        if backend.worker.open_sessions == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{backend.worker.open_sessions} sessions left open")


async def test_a_client_that_leaves_mid_stream_closes_the_session(
    local_gateway: tuple[str, FastAPI],
) -> None:
    url, app = local_gateway
    backend = tiny_of(app)
    body = {
        "model": "tiny",
        "prompt": PROMPT,
        "max_tokens": 1500,
        "stream": True,
        "temperature": 0,
        "ignore_eos": True,
    }
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as http,
        http.stream("POST", "/v1/completions", json=body) as response,
    ):
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data:")
            if seen == 3:
                break
        assert backend.worker.open_sessions == 1
    await wait_closed(backend)


async def test_memory_stays_flat_over_200_sequential_requests(
    local_gateway: tuple[str, FastAPI],
) -> None:
    url, app = local_gateway
    process = psutil.Process()

    async def burst(http: httpx.AsyncClient, count: int) -> None:
        for i in range(count):
            body = {
                "model": "tiny",
                "prompt": f"{PROMPT} {i}",
                "max_tokens": 16,
                "stream": i % 2 == 0,
                "logprobs": 2,
            }
            response = await http.post("/v1/completions", json=body)
            assert response.status_code == 200

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await burst(http, 30)  # warm up allocator pools and caches
        gc.collect()
        before = process.memory_info().rss
        await burst(http, 200)
        gc.collect()
        grown = process.memory_info().rss - before
    assert tiny_of(app).worker.open_sessions == 0
    assert grown < 16 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 200 requests"


async def test_n_and_several_prompts_give_every_choice_its_index(
    local_gateway: tuple[str, FastAPI],
) -> None:
    url, _ = local_gateway
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post(
            "/v1/completions",
            json={
                "model": "tiny",
                "prompt": [[1, 2, 3], [4, 5]],
                "n": 3,
                "max_tokens": 4,
                "seed": 5,
                "ignore_eos": True,
            },
        )
    body = response.json()
    assert [c["index"] for c in body["choices"]] == list(range(6))
    assert all(c["finish_reason"] == "length" for c in body["choices"])
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 24, "total_tokens": 29}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logit_bias": {"5": 1.0}}, "logit_bias"),
        ({"suffix": "end"}, "suffix"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"prompt": [49152]}, None),
        ({"max_tokens": 5000}, "max_tokens"),
    ],
)
async def test_what_a_local_model_cannot_do_is_refused_clearly(
    local_gateway: tuple[str, FastAPI], extra: dict[str, object], param: str | None
) -> None:
    url, app = local_gateway
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post(
            "/v1/completions", json={"model": "tiny", "prompt": PROMPT, **extra}
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert tiny_of(app).worker.open_sessions == 0
