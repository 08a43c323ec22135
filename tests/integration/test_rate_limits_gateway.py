"""Per-key rate limits through Tandem on loopback: exact admission under concurrency (in memory and
on Redis), OpenAI's 429 envelope and headers, token limits, and keys limited apart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI, RateLimitError

from tests.integration.test_auth_health_metrics import sample
from tests.redis_server import RedisServer, shared_redis, unique_prefix
from tests.servers import catalog_for, serve_gateway, serve_process, write_catalog

KEY_A, KEY_B = "sk-limited-a", "sk-limited-b"
RPM = 20


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the echo model needs no upstream: the limits are what is under test
    return write_catalog(tmp_path_factory.mktemp("limits"), catalog_for("http://127.0.0.1:9"))


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with shared_redis() as url:
        yield url


def chat_body(text: str = "hello there") -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": text}]}


async def burst(url: str, n: int, key: str = KEY_A) -> tuple[list[httpx.Response], float]:
    headers = {"authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=chat_body()) for _ in range(n))
        )
    return list(responses), time.monotonic() - started


def admitted_at_most(elapsed: float) -> int:
    """The bucket holds RPM and refills one request every 60/RPM seconds."""
    return RPM + int(elapsed * RPM / 60)


@pytest.mark.parametrize("where", ["memory", "redis"])
async def test_a_burst_of_100_admits_exactly_the_limit(
    catalog: Path, redis_url: str, where: str
) -> None:
    env = {"TANDEM_API_KEYS": f"{KEY_A},{KEY_B}", "TANDEM_RATE_LIMIT_RPM": str(RPM)}
    if where == "redis":
        env |= {"TANDEM_REDIS_URL": redis_url, "TANDEM_REDIS_PREFIX": unique_prefix()}
    # In its own process, as deployed: a gateway thread here would share this process's
    # interpreter lock with the 100 clients, and a Redis reply it is too starved to read in
    # time counts as a timeout, decided locally (the designed fallback), so admits too many.
    with serve_process(catalog, env=env) as (_, url):
        responses, elapsed = await burst(url, 100)
        other_key, _ = await burst(url, 1, KEY_B)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{url}/metrics")).text
    timeouts = sample(metrics, "tandem_redis_operation_seconds_count", op="take", result="timeout")
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}
    # exactly 20 whenever the burst takes under 3 s, as it does on loopback
    assert RPM <= statuses.count(200) <= admitted_at_most(elapsed), f"{timeouts} takes timed out"
    for response in responses:
        assert response.headers["x-ratelimit-limit-requests"] == str(RPM)
        assert int(response.headers["x-ratelimit-remaining-requests"]) in range(RPM)
        assert response.headers["x-ratelimit-reset-requests"].endswith("s")
    refused = [r for r in responses if r.status_code == 429]
    assert all(r.headers["x-ratelimit-remaining-requests"] == "0" for r in refused)
    assert all(1 <= int(r.headers["retry-after"]) <= 3 for r in refused)
    error = refused[0].json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "requests per minute" in error["message"]
    assert other_key[0].status_code == 200, "another key has its own budget"


def test_tokens_per_minute_refuse_after_a_costly_answer(catalog: Path) -> None:
    with (
        serve_gateway(catalog, rate_limit_tpm=10) as url,
        OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        first = client.chat.completions.with_raw_response.create(
            **chat_body("one two three four five six seven")
        )
        assert first.headers["x-ratelimit-remaining-tokens"] == "10"
        assert "x-ratelimit-limit-requests" not in first.headers, "no request limit is set"
        with pytest.raises(RateLimitError) as caught:
            client.chat.completions.create(**chat_body())
        models = httpx.get(f"{url}/v1/models")
    response = caught.value.response
    assert response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert response.headers["x-tandem-cache"] == "bypass", "refused before the cache is asked"
    assert "tokens per minute" in response.json()["error"]["message"]
    # 7 + 9 = 16 tokens against a bucket of 10: a debt of 6, so 7 to refill at 10 a minute
    assert response.headers["retry-after"] == "42"
    assert models.status_code == 429, "every /v1/ request is limited"
    assert models.headers["x-ratelimit-limit-tokens"] == "10"


def test_limits_fall_back_to_this_process_while_redis_is_down(catalog: Path) -> None:
    with RedisServer() as redis:
        settings = {"redis_url": redis.url, "rate_limit_rpm": 3}
        with serve_gateway(catalog, **settings) as url:
            assert httpx.post(f"{url}/v1/chat/completions", json=chat_body()).status_code == 200
            redis.kill()
            statuses = [
                httpx.post(f"{url}/v1/chat/completions", json=chat_body()).status_code
                for _ in range(4)
            ]
            metrics = httpx.get(f"{url}/metrics").text
    # the local buckets start full: an outage grants each replica one more budget, no more
    assert statuses == [200, 200, 200, 429]
    assert "tandem_redis_outages_total 1.0" in metrics
    assert 'tandem_rate_limited_total{limit="requests"} 1.0' in metrics


@pytest.fixture(scope="module")
def slow_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    catalog = {
        "backends": {"slow": {"kind": "echo", "delay": 0.2}},
        "models": {"slow": {"policy": "direct", "backends": {"main": "slow"}}},
    }
    return write_catalog(tmp_path_factory.mktemp("slow-limits"), catalog)


async def test_concurrent_requests_cannot_all_enter_on_the_last_tokens(slow_catalog: Path) -> None:
    body = {"model": "slow", "messages": [{"role": "user", "content": "hello there"}]}
    # each reserves its prompt's estimate (3 + 1 for the message) and max_tokens: 34 of 100
    with serve_gateway(slow_catalog, rate_limit_tpm=100) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/v1/chat/completions", json={**body, "max_tokens": 30})
                    for _ in range(8)
                )
            )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200] + [429] * 6
    refused = next(r for r in responses if r.status_code == 429)
    assert "tokens per minute" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1


def test_a_stream_left_early_is_charged_what_it_produced(slow_catalog: Path) -> None:
    long_prompt = " ".join(["word"] * 400)  # 1,999 characters: about 500 tokens
    body = {
        "model": "slow",
        "messages": [{"role": "user", "content": long_prompt}],
        "stream": True,
        "max_tokens": 200,
    }
    with serve_gateway(slow_catalog, rate_limit_tpm=1000) as url:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            for _ in range(6):  # a few pieces, then the client leaves before any usage
                next(lines)
        time.sleep(0.5)  # the server notices the disconnect and settles the reservation
        after = httpx.post(
            f"{url}/v1/chat/completions", json={"model": "slow", "messages": body["messages"][:1]}
        )
    remaining = int(after.headers["x-ratelimit-remaining-tokens"])
    # charged about 500 for the prompt and a few for the pieces, refilled ~17 a second since
    assert 400 < remaining < 600, remaining
