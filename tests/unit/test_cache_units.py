"""The in-process store, the rate limiter's arithmetic and the response cache's keys and entries."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from gateway.api.sse import ChunkWriter, Envelope
from gateway.backends.echo import EchoBackend, EchoConfig
from gateway.core.config import Settings
from gateway.core.errors import RateLimited, UpstreamBadResponse
from gateway.core.events import Delta, Event, Finish, Report, Usage
from gateway.core.protocol import CacheControl, ChatCompletionRequest, CompletionRequest
from gateway.observability.metrics import Metrics
from gateway.policies.direct import DirectParams
from gateway.stores.cache import Bucket, MemoryStore, Store, StoreUnavailable, Taken
from gateway.stores.ratelimit import Limits, RateLimiter, duration, refusal
from gateway.stores.response_cache import (
    CacheConfig,
    ResponseCache,
    decode,
    deterministic,
    encode,
    request_key,
    tagged,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class DownStore(Store):
    """A store whose backing service is unreachable, as RedisStore is during an outage."""

    async def get(self, key: str) -> bytes | None:
        raise StoreUnavailable

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        raise StoreUnavailable

    async def take(self, buckets: object) -> Taken:
        raise StoreUnavailable


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


BACKENDS = {"main": EchoBackend("echo", EchoConfig())}
PARAMS = DirectParams()


def key(body: ChatCompletionRequest | CompletionRequest, scope: str = "key:a") -> str:
    return request_key(body, "direct", PARAMS, BACKENDS, scope)


async def test_memory_store_expires_values() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.set("k", b"v", ttl=10)
    assert await store.get("k") == b"v"
    clock.now += 10
    assert await store.get("k") is None
    assert len(store) == 0


async def test_memory_store_evicts_least_recently_used_within_its_bytes() -> None:
    store = MemoryStore(max_bytes=30)
    for name in "abc":
        await store.set(name, name.encode() * 10, ttl=60)
    assert await store.get("a") == b"a" * 10  # a is now the most recently used
    await store.set("d", b"d" * 10, ttl=60)
    assert await store.get("b") is None
    assert [await store.get(n) for n in "acd"] == [b"a" * 10, b"c" * 10, b"d" * 10]
    await store.set("huge", b"x" * 31, ttl=60)
    assert await store.get("huge") is None, "a value over the whole budget is not kept"


async def test_memory_buckets_refill_with_time_and_may_go_into_debt() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    bucket = Bucket("k", capacity=2, per_second=1)
    assert [(await store.take([bucket])).allowed for _ in range(3)] == [True, True, False]
    clock.now += 1
    assert (await store.take([bucket])).allowed
    debt = await store.take([Bucket("k", 2, 1, cost=10, need=0)])
    assert debt.levels == (-2.0,), "a debt is bounded by the capacity"
    clock.now += 2.5
    taken = await store.take([bucket])
    assert not taken.allowed
    assert taken.levels == (0.5,)


async def test_a_take_over_several_buckets_is_all_or_nothing() -> None:
    store = MemoryStore(clock=Clock())
    full = Bucket("requests", 5, 1)
    empty = Bucket("tokens", 5, 1, cost=5, need=5)
    assert (await store.take([empty])).allowed
    refused = await store.take([full, empty])
    assert not refused.allowed
    assert refused.levels == (5.0, 0.0), "the request bucket was not charged"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0201, "21ms"), (1, "1s"), (2.5, "2.5s"), (360, "6m0s"), (61.25, "1m1.25s")],
)
def test_reset_durations_read_like_openai(seconds: float, text: str) -> None:
    assert duration(seconds) == text


async def test_limiter_admits_exactly_its_limit_under_concurrency() -> None:
    limiter = RateLimiter(Limits(requests_per_minute=20), MemoryStore(), Metrics())
    admissions = await asyncio.gather(*(limiter.admit("key") for _ in range(100)))
    assert sum(a.allowed for a in admissions) == 20
    refused = [a for a in admissions if not a.allowed]
    assert {a.refused_by for a in refused} == {"requests"}
    assert all(2 < (a.retry_after or 0) <= 3 for a in refused), "one request refills in 3 s"
    assert (await limiter.admit("other key")).allowed, "each key has its own buckets"


async def test_limiter_headers_and_token_debt() -> None:
    metrics = Metrics()
    limiter = RateLimiter(Limits(10, 100), MemoryStore(), metrics)
    first = await limiter.admit("k")
    assert dict(first.headers) == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "100",
        "x-ratelimit-reset-tokens": "0ms",
    }
    await limiter.debit("k", 150)
    refused = await limiter.admit("k")
    assert not refused.allowed
    assert refused.refused_by == "tokens"
    assert dict(refused.headers)["x-ratelimit-remaining-tokens"] == "0"
    assert dict(refused.headers)["x-ratelimit-remaining-requests"] == "9", "not charged"
    error = refusal(refused)
    assert error.status == 429
    assert error.body()["error"]["type"] == "rate_limit_error"
    # 150 tokens against a bucket of 100 leave a debt of 50: 51 to refill at 100/min
    assert error.headers()["retry-after"] == "31"
    assert metrics.rate_limited.labels("tokens")._value.get() == 1


async def test_limiter_falls_back_to_local_buckets_when_the_store_is_down() -> None:
    limiter = RateLimiter(Limits(requests_per_minute=3), DownStore(), Metrics())
    assert [(await limiter.admit("k")).allowed for _ in range(4)] == [True, True, True, False]


async def test_metered_streams_debit_their_usage() -> None:
    limiter = RateLimiter(Limits(tokens_per_minute=10), MemoryStore(), Metrics())

    async def events():  # type: ignore[no-untyped-def]
        yield Delta(0, "x")
        yield Usage(4, 8)

    assert [e async for e in limiter.metered("k", events())] == [Delta(0, "x"), Usage(4, 8)]
    assert dict((await limiter.admit("k")).headers)["x-ratelimit-remaining-tokens"] == "0"


@pytest.mark.parametrize(
    ("value", "control"),
    [
        ("no-cache", CacheControl(read=False)),
        ("no-store", CacheControl(read=False, store=False)),
        ({"ttl": 5}, CacheControl(ttl=5.0)),
    ],
)
def test_cache_control_values(value: object, control: CacheControl) -> None:
    assert chat(tandem={"cache": value}).options().cache == control


@pytest.mark.parametrize(
    "value", ["no", {"ttl": 0}, {"ttl": -1}, {"ttl": True}, {"ttl": "5"}, {"tl": 5}, 3]
)
def test_bad_cache_control_names_the_field(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        chat(tandem={"cache": value})
    assert caught.value.errors()[0]["loc"] == ("tandem", "cache")


def test_only_deterministic_requests_are_cacheable() -> None:
    assert deterministic(chat(temperature=0))
    assert deterministic(chat(seed=7, temperature=1.2))
    assert not deterministic(chat())
    assert not deterministic(chat(temperature=0.1))


def test_key_ignores_streaming_and_scopes_by_tenant() -> None:
    base = key(chat(temperature=0))
    assert key(chat(temperature=0, stream=True, stream_options={"include_usage": True})) == base
    assert key(chat(temperature=0, tandem={"cache": {"ttl": 9}})) == base
    assert key(chat(temperature=0), scope="key:b") != base
    assert key(chat(temperature=0, max_tokens=5)) != base
    assert key(chat(temperature=0, messages=[{"role": "user", "content": "ho"}])) != base
    assert key(chat(temperature=0, top_k=3)) != base, "an extra field reaches the model"
    other = request_key(chat(temperature=0), "direct", DirectParams(role="x"), BACKENDS, "key:a")
    assert other != base


EVENTS: list[Event] = [
    Delta(0, "", reasoning="think"),
    Delta(0, "Hel", logprobs={"content": [{"token": "Hel", "logprob": -0.1}]}),
    Delta(0, "lo", source="small"),
    Finish(0, "stop"),
    Usage(3, 2, extra={"prompt_tokens_details": {"cached_tokens": 0}}),
    Report("direct", {"main": 2}, extra={"backend": "up"}),
]


def test_entries_round_trip_every_event_field() -> None:
    assert decode(encode(EVENTS)) == EVENTS


@pytest.mark.parametrize("blob", [b"not json", b"[1]", b'[{"type": "z"}]', b'[{"type": "d"}]'])
def test_unreadable_entries_are_refused(blob: bytes) -> None:
    with pytest.raises(ValueError, match=r"unreadable|Expecting"):
        decode(blob)


async def test_a_streamed_hit_replays_the_original_chunks() -> None:
    cache = ResponseCache(MemoryStore(), CacheConfig(), Metrics())
    body = chat(temperature=0)

    async def produce():  # type: ignore[no-untyped-def]
        for event in EVENTS:
            yield event

    miss = await cache.lookup(body, "direct", PARAMS, BACKENDS, "a")
    assert miss.status == "miss"
    fresh = [e async for e in cache.record(miss, produce())]
    await cache.aclose()
    hit = await cache.lookup(body, "direct", PARAMS, BACKENDS, "a")
    assert hit.status == "hit"
    replayed = [e async for e in cache.replay(hit)]
    assert replayed == fresh == EVENTS
    report = replayed[-1]
    assert isinstance(report, Report)
    replayed[-1] = tagged(report, "hit")  # what the response adds (gateway/api/responses.py)
    assert "cache" not in report.extra, "the stored report is not changed"
    writer = ChunkWriter(Envelope("chat", "id", 0, "m"), include_usage=True, provenance=False)
    sse = b"".join(writer.write(e) for e in replayed) + writer.close()
    assert sse.count(b"data: ") == 6, "reasoning, two text deltas, finish, usage, [DONE]"
    assert b'"reasoning_content":"think"' in sse
    assert b'"usage":{"prompt_tokens":3' in sse
    assert b'"cache":"hit"' in sse


async def test_incomplete_answers_are_not_stored() -> None:
    store = MemoryStore()
    cache = ResponseCache(store, CacheConfig(), Metrics())
    body = chat(temperature=0)

    async def broken():  # type: ignore[no-untyped-def]
        yield Delta(0, "partial")
        raise RuntimeError("upstream died")

    lookup = await cache.lookup(body, "direct", PARAMS, BACKENDS, "a")
    with pytest.raises(RuntimeError):
        _ = [e async for e in cache.record(lookup, broken())]
    stream = cache.record(lookup, aiter_of(EVENTS))
    await anext(stream)
    await stream.aclose()  # the client went away
    await cache.aclose()
    assert len(store) == 0


async def test_bypass_when_the_store_is_down_or_the_request_says_so() -> None:
    metrics = Metrics()
    down = ResponseCache(DownStore(), CacheConfig(), metrics)
    assert (await down.lookup(chat(temperature=0), "direct", PARAMS, BACKENDS, "a")).status == (
        "bypass"
    )
    up = ResponseCache(MemoryStore(), CacheConfig(), metrics)
    no_store = chat(temperature=0, tandem={"cache": "no-store"})
    assert (await up.lookup(no_store, "direct", PARAMS, BACKENDS, "a")).key is None
    no_cache = await up.lookup(
        chat(temperature=0, tandem={"cache": "no-cache"}), "direct", PARAMS, BACKENDS, "a"
    )
    assert (no_cache.status, no_cache.key is not None) == ("miss", True)
    assert metrics.cache_requests.labels("response", "bypass")._value.get() == 2


async def aiter_of(events: list[Event]):  # type: ignore[no-untyped-def]
    for event in events:
        yield event


class WriteFailingStore(MemoryStore):
    """Reads work, writes fail: Redis going away between a lookup and the store."""

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        raise StoreUnavailable


async def test_a_failed_write_loses_the_entry_not_the_answer() -> None:
    cache = ResponseCache(WriteFailingStore(), CacheConfig(), Metrics())
    lookup = await cache.lookup(chat(temperature=0), "direct", PARAMS, BACKENDS, "a")
    assert [e async for e in cache.record(lookup, aiter_of(EVENTS))][:-1] == EVENTS[:-1]
    await cache.aclose()
    again = await cache.lookup(chat(temperature=0), "direct", PARAMS, BACKENDS, "a")
    assert again.status == "miss"


async def test_a_corrupt_entry_is_a_miss_and_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    cache = ResponseCache(store, CacheConfig(), Metrics())
    body = chat(temperature=0)
    await store.set(key(body, scope="key:a"), b'[{"type": "d", "bogus": 1}]', ttl=60)
    lookup = await cache.lookup(body, "direct", PARAMS, BACKENDS, "a")
    assert (lookup.status, lookup.key) == ("miss", key(body, scope="key:a"))
    assert "ignoring a response cache entry" in caplog.text
    _ = [e async for e in cache.record(lookup, aiter_of(EVENTS))]
    await cache.aclose()
    assert (await cache.lookup(body, "direct", PARAMS, BACKENDS, "a")).status == "hit"


async def test_answers_over_the_entry_limit_are_not_stored() -> None:
    store = MemoryStore()
    cache = ResponseCache(store, CacheConfig(max_entry_bytes=4), Metrics())
    lookup = await cache.lookup(chat(temperature=0), "direct", PARAMS, BACKENDS, "a")
    _ = [e async for e in cache.record(lookup, aiter_of(EVENTS))]
    await cache.aclose()
    assert len(store) == 0


@pytest.mark.parametrize(
    "env",
    [
        {"redis_url": "http://127.0.0.1:6379"},
        {"cache_scope": "tenant"},
        {"rate_limit_rpm": -1},
        {"cache_ttl_seconds": 0},
    ],
)
def test_bad_cache_settings_are_refused(env: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**env)  # type: ignore[arg-type]


async def test_degraded_answers_are_not_stored() -> None:
    store = MemoryStore()
    cache = ResponseCache(store, CacheConfig(), Metrics())
    lookup = await cache.lookup(chat(temperature=0), "direct", PARAMS, BACKENDS, "a")
    degraded = [*EVENTS[:-1], Report("collab", {"small": 2}, degraded=True)]
    _ = [e async for e in cache.record(lookup, aiter_of(degraded))]
    await cache.aclose()
    assert len(store) == 0


async def test_a_reservation_is_settled_to_the_usage_or_to_what_was_produced() -> None:
    limiter = RateLimiter(Limits(tokens_per_minute=100), MemoryStore(), Metrics())

    async def answered():  # type: ignore[no-untyped-def]
        yield Delta(0, "x")
        yield Usage(4, 6)

    reserved = await limiter.reserve("k", 50)
    assert reserved == 50
    assert [e async for e in limiter.metered("k", answered(), None, reserved, 4)]
    remaining = dict((await limiter.admit("k")).headers)["x-ratelimit-remaining-tokens"]
    assert remaining == "90", "the 40 reserved beyond the usage came back"

    async def cut_short():  # type: ignore[no-untyped-def]
        yield Delta(0, "x")
        yield Delta(0, "y")
        raise UpstreamBadResponse("gone")

    reserved = await limiter.reserve("k", 80)
    with pytest.raises(UpstreamBadResponse):
        async for _ in limiter.metered("k", cut_short(), None, reserved, 4):
            pass
    await asyncio.sleep(0.01)  # the settlement runs beside the failing stream
    remaining = dict((await limiter.admit("k")).headers)["x-ratelimit-remaining-tokens"]
    assert remaining == "84", "charged the prompt's 4 and the 2 pieces, no more"
    with pytest.raises(RateLimited):
        await limiter.reserve("k", 85)  # 84 left: the whole reservation must fit


async def test_a_reservation_is_capped_at_the_bucket() -> None:
    limiter = RateLimiter(Limits(tokens_per_minute=100), MemoryStore(), Metrics())
    assert await limiter.reserve("k", 5000) == 100  # else no request that large could ever run
