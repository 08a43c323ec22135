"""The response cache through Tandem on loopback, with the official SDK, in front of the fake
upstream: hits and misses, streamed replays, per-request control, tenant scopes, and the cache
on Redis as well as in memory."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import APIError, BadRequestError, OpenAI

from gateway.backends import register
from gateway.backends.base import Backend
from gateway.core.events import Delta, EventStream, Finish, Usage
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest
from tests.redis_server import shared_redis, unique_prefix
from tests.servers import UPSTREAM_KEY, UPSTREAM_KEY_ENV, Upstream, catalog_for, serve_gateway
from tests.servers import write_catalog as write

KEY_A, KEY_B = "sk-tenant-a", "sk-tenant-b"


@register("test-reasoning")
class ReasoningBackend(Backend):
    """A model that thinks before it answers, and counts how often it was asked."""

    kind = "test-reasoning"
    calls = 0

    async def health(self) -> None:
        return None

    def chat(self, request: ChatCompletionRequest) -> EventStream:
        ReasoningBackend.calls += 1
        return self._answer()

    def complete(self, request: CompletionRequest) -> EventStream:
        return self._answer()

    async def _answer(self) -> EventStream:
        yield Delta(0, "", reasoning="Let me")
        yield Delta(0, "", reasoning=" think.")
        for piece in ("The", " answer", " is", " 42"):
            yield Delta(0, piece)
        yield Finish(0, "stop")
        yield Usage(5, 4)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Path:
    spec = catalog_for(upstream.url)
    spec["backends"]["think"] = {"kind": "test-reasoning"}
    spec["models"]["think"] = {"policy": "direct", "backends": {"main": "think"}}
    return write(tmp_path_factory.mktemp("cache-catalog"), spec)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with shared_redis() as url:
        yield url


@pytest.fixture(scope="module", params=["memory", "redis"])
def gateway(
    request: pytest.FixtureRequest, catalog: Path, redis_url: str, monkeypatch_session: Any
) -> Iterator[str]:
    monkeypatch_session.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    redis = {"redis_url": redis_url, "redis_prefix": unique_prefix()}
    settings = redis if request.param == "redis" else {}
    with serve_gateway(catalog, api_keys=[KEY_A, KEY_B], **settings) as url:
        yield url


def sdk(url: str, key: str = KEY_A) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def marker() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


def ask(client: OpenAI, text: str, **fields: Any) -> tuple[str, Any]:
    """(x-tandem-cache, the parsed completion)."""
    fields.setdefault("temperature", 0)
    raw = client.chat.completions.with_raw_response.create(
        model="relay", messages=[{"role": "user", "content": text}], **fields
    )
    return raw.headers["x-tandem-cache"], raw.parse()


def extension(result: Any) -> dict[str, Any]:
    return dict((result.model_extra or {})["tandem"])


def upstream_calls(upstream: Upstream, tag: str) -> int:
    return sum(tag in str(r.body) for r in upstream.fake.records)


def test_a_deterministic_answer_is_served_from_the_cache(gateway: str, upstream: Upstream) -> None:
    tag = marker()
    with sdk(gateway) as client:
        first_header, first = ask(client, tag)
        second_header, second = ask(client, tag)
    assert (first_header, second_header) == ("miss", "hit")
    assert (extension(first)["cache"], extension(second)["cache"]) == ("miss", "hit")
    assert upstream_calls(upstream, tag) == 1
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.usage == first.usage
    assert second.id != first.id, "a hit is a new response with the stored content"


def test_seeded_requests_are_cached_and_sampled_ones_bypass(
    gateway: str, upstream: Upstream
) -> None:
    seeded, sampled = marker(), marker()
    with sdk(gateway) as client:
        assert [ask(client, seeded, temperature=0.7, seed=3)[0] for _ in range(2)] == [
            "miss",
            "hit",
        ]
        headers = [ask(client, sampled, temperature=0.7)[0] for _ in range(2)]
    assert headers == ["bypass", "bypass"]
    assert upstream_calls(upstream, sampled) == 2


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_streamed_hit_replays_token_sized_chunks(gateway: str, include_usage: bool) -> None:
    tag = marker()
    fields: dict[str, Any] = {
        "stream": True,
        "stream_options": {"include_usage": include_usage},
        "extra_body": {"fake": {"chunks": 6}},
    }
    with sdk(gateway) as client:
        ask(client, tag, extra_body={"fake": {"chunks": 6}})  # stored by a whole response
        header, stream = ask(client, tag, **fields)
        hit = list(stream)
        fresh_header, fresh_stream = ask(
            client,
            tag,
            **{**fields, "extra_body": {"fake": {"chunks": 6}, "tandem": {"cache": "no-cache"}}},
        )
        fresh = list(fresh_stream)
    assert (header, fresh_header) == ("hit", "miss")
    pieces = [c.choices[0].delta.content for c in hit if c.choices]
    assert pieces == [c.choices[0].delta.content for c in fresh if c.choices]
    assert pieces[1:7] == ["w0", " w1", " w2", " w3", " w4", " w5"]
    assert [c.usage is not None for c in hit] == [c.usage is not None for c in fresh]
    assert (hit[-1].usage is not None) is include_usage
    assert extension(hit[-1])["cache"] == "hit"
    assert extension(fresh[-1])["cache"] == "miss"


def test_reasoning_survives_a_streamed_replay(gateway: str) -> None:
    with sdk(gateway) as client:
        before = ReasoningBackend.calls
        request: dict[str, Any] = {
            "model": "think",
            "messages": [{"role": "user", "content": marker()}],
            "temperature": 0,
        }
        whole = client.chat.completions.create(**request)
        chunks = list(client.chat.completions.create(**request, stream=True))
    assert ReasoningBackend.calls == before + 1
    assert (whole.choices[0].message.model_extra or {})["reasoning_content"] == "Let me think."
    reasoning = [(c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks]
    assert [r for r in reasoning if r] == ["Let me", " think."]
    text = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert text == ["The", " answer", " is", " 42"]
    assert extension(chunks[-1])["cache"] == "hit"


def test_per_request_cache_control(gateway: str, upstream: Upstream) -> None:
    tag, short = marker(), marker()
    with sdk(gateway) as client:
        no_store = {"extra_body": {"tandem": {"cache": "no-store"}}}
        assert ask(client, tag, **no_store)[0] == "bypass"
        assert ask(client, tag)[0] == "miss", "no-store kept nothing"
        assert ask(client, tag, extra_body={"tandem": {"cache": "no-cache"}})[0] == "miss"
        assert ask(client, tag)[0] == "hit"
        assert ask(client, short, extra_body={"tandem": {"cache": {"ttl": 0.3}}})[0] == "miss"
        assert ask(client, short)[0] == "hit"
        time.sleep(0.4)
        assert ask(client, short)[0] == "miss", "the entry expired with its own TTL"
    assert upstream_calls(upstream, tag) == 3


@pytest.mark.parametrize("value", ["sometimes", {"ttl": -1}, {"ttl": 5, "scope": "x"}])
def test_a_bad_cache_control_is_a_400_naming_it(gateway: str, value: Any) -> None:
    with sdk(gateway) as client, pytest.raises(BadRequestError) as caught:
        ask(client, marker(), extra_body={"tandem": {"cache": value}})
    assert caught.value.response.headers["x-tandem-cache"] == "bypass"
    error = caught.value.response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "tandem.cache")


def test_failed_answers_are_not_stored(gateway: str, upstream: Upstream) -> None:
    tag = marker()
    broken = {"fake": {"mode": "error_in_stream", "close_after": 2}}
    with sdk(gateway) as client:
        for _ in range(2):
            header, stream = ask(client, tag, stream=True, extra_body=broken)
            assert header == "miss"
            with pytest.raises(APIError, match="the model server had an error"):
                list(stream)
    assert upstream_calls(upstream, tag) == 2


def test_legacy_completions_are_cached_too(gateway: str, upstream: Upstream) -> None:
    tag = marker()
    with sdk(gateway) as client:
        headers = [
            client.completions.with_raw_response.create(
                model="relay", prompt=tag, temperature=0, max_tokens=4
            ).headers["x-tandem-cache"]
            for _ in range(2)
        ]
    assert headers == ["miss", "hit"]
    assert upstream_calls(upstream, tag) == 1


def test_tenants_never_see_each_others_answers(gateway: str, upstream: Upstream) -> None:
    tag = marker()
    with sdk(gateway, KEY_A) as a, sdk(gateway, KEY_B) as b:
        assert ask(a, tag)[0] == "miss"
        assert ask(b, tag)[0] == "miss", "key B must not be served key A's answer"
        assert ask(a, tag)[0] == "hit"
        assert ask(b, tag)[0] == "hit"
    assert upstream_calls(upstream, tag) == 2


def test_a_global_scope_shares_answers_between_keys(catalog: Path, upstream: Upstream) -> None:
    tag = marker()
    keys = [KEY_A, KEY_B]
    with (
        serve_gateway(catalog, api_keys=keys, cache_scope="global") as url,
        sdk(url, KEY_A) as a,
        sdk(url, KEY_B) as b,
    ):
        assert ask(a, tag)[0] == "miss"
        assert ask(b, tag)[0] == "hit"
    assert upstream_calls(upstream, tag) == 1


def test_the_cache_can_be_turned_off(catalog: Path, upstream: Upstream) -> None:
    tag = marker()
    with serve_gateway(catalog, cache_enabled=False) as url, sdk(url) as client:
        assert [ask(client, tag)[0] for _ in range(2)] == ["bypass", "bypass"]
        models = httpx.get(f"{url}/v1/models")
    assert "x-tandem-cache" not in models.headers, "only completion responses carry it"
    assert upstream_calls(upstream, tag) == 2


def test_cache_metrics_count_results(gateway: str) -> None:
    with sdk(gateway) as client:
        ask(client, marker())
    metrics = httpx.get(f"{gateway}/metrics").text
    for result in ("hit", "miss", "bypass"):
        assert f'tandem_cache_requests_total{{cache="response",result="{result}"}}' in metrics


def generated_tokens(url: str, model: str) -> float:
    line = f'tandem_tokens_total{{model="{model}",source="main"}} '
    text = httpx.get(f"{url}/metrics").text
    return sum(float(row[len(line) :]) for row in text.splitlines() if row.startswith(line))


def test_a_hit_is_not_counted_as_model_work(gateway: str) -> None:
    request: dict[str, Any] = {
        "model": "think",
        "messages": [{"role": "user", "content": marker()}],
        "temperature": 0,
    }
    with sdk(gateway) as client:
        client.chat.completions.create(**request)
        before = generated_tokens(gateway, "think")
        hit = client.chat.completions.with_raw_response.create(**request)
    assert hit.headers["x-tandem-cache"] == "hit"
    assert before >= 4
    assert generated_tokens(gateway, "think") == before
