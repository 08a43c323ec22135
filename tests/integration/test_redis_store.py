"""The Redis store against real Redis servers on loopback: values, atomic buckets, and what it
does when Redis dies, hangs, comes back or forgets everything."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from gateway.observability.metrics import Metrics
from gateway.stores.cache import Bucket, StoreUnavailable
from gateway.stores.ratelimit import Limits, RateLimiter
from gateway.stores.redis_store import TIMEOUTS_TO_OUTAGE, RedisStore
from tests.redis_server import RedisServer, shared_redis, unique_prefix


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with shared_redis() as url:
        yield url


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, Metrics(), prefix=unique_prefix())
    await store.start()
    yield store
    await store.aclose()


@pytest.fixture
def private() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def outages(store: RedisStore) -> float:
    return float(store._metrics.redis_outages._value.get())


async def recovers(store: RedisStore, within: float = 5.0) -> float:
    """Seconds until an operation succeeds again (operations are what trigger probes)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            await store.get("probe")
        except StoreUnavailable:
            await asyncio.sleep(0.02)
        else:
            return time.monotonic() - started
    raise AssertionError(f"the store did not recover within {within} s")


async def test_values_live_for_their_ttl(store: RedisStore) -> None:
    assert store.available
    await store.set("k", b"\x00value", ttl=0.2)
    assert await store.get("k") == b"\x00value"
    await asyncio.sleep(0.3)
    assert await store.get("k") is None


@pytest.mark.parametrize("replicas", [1, 2])
async def test_concurrent_admissions_take_exactly_the_limit(redis_url: str, replicas: int) -> None:
    prefix = unique_prefix()
    stores = [RedisStore(redis_url, Metrics(), prefix=prefix) for _ in range(replicas)]
    limiters = [RateLimiter(Limits(requests_per_minute=20), s, Metrics()) for s in stores]
    try:
        admissions = await asyncio.gather(
            *(limiters[i % replicas].admit("key") for i in range(100))
        )
    finally:
        await asyncio.gather(*(s.aclose() for s in stores))
    assert all(s.available for s in stores), "every take went to Redis"
    assert sum(a.allowed for a in admissions) == 20


async def test_a_multi_bucket_take_is_atomic_in_redis(store: RedisStore) -> None:
    requests = Bucket("r", capacity=5, per_second=1)
    tokens = Bucket("t", capacity=5, per_second=0.001, cost=5, need=5)
    assert (await store.take([tokens])).allowed
    refused = await store.take([requests, tokens])
    assert not refused.allowed
    assert refused.levels[0] == 5.0
    assert refused.levels[1] < 1


async def test_a_dead_redis_is_bypassed_at_once_and_logged_once(
    private: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(private.url, Metrics())
    await store.start()
    await store.set("k", b"v", ttl=60)
    private.kill()
    caplog.set_level(logging.WARNING, logger="gateway.stores.redis_store")
    started = time.monotonic()
    for _ in range(50):
        with pytest.raises(StoreUnavailable):
            await store.get("k")
    assert time.monotonic() - started < 0.5, "an outage costs no network round trips"
    assert outages(store) == 1
    assert len([r for r in caplog.records if "unavailable" in r.message]) == 1
    private.start()
    assert await recovers(store) < 3.0
    assert await store.get("k") is None, "the restarted server has no data; a miss, no error"
    assert len([r for r in caplog.records if "answers again after" in r.message]) == 1
    await store.aclose()


async def test_a_paused_redis_costs_a_few_timeouts_then_nothing(private: RedisServer) -> None:
    store = RedisStore(private.url, Metrics(), timeout=0.05)
    await store.start()
    private.pause()
    for _ in range(TIMEOUTS_TO_OUTAGE):
        assert store.available, "a lone timeout is a miss, not an outage"
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.get("k")
        assert 0.04 < time.monotonic() - started < 0.3, "the 50 ms timeout bounds an operation"
    assert not store.available
    started = time.monotonic()
    results = await asyncio.gather(*(store.get("k") for _ in range(100)), return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert time.monotonic() - started < 0.1
    await asyncio.sleep(0.3)  # probes time out while the server is paused
    with pytest.raises(StoreUnavailable):
        await store.get("k")
    assert outages(store) == 1
    private.resume()
    assert await recovers(store) < 3.0
    await store.set("k", b"back", ttl=60)
    assert await store.get("k") == b"back"
    await store.aclose()


async def test_a_flushed_redis_means_misses_and_fresh_buckets(private: RedisServer) -> None:
    store = RedisStore(private.url, Metrics())
    await store.start()
    bucket = Bucket("b", capacity=1, per_second=0.001)
    await store.set("k", b"v", ttl=60)
    assert (await store.take([bucket])).allowed
    assert not (await store.take([bucket])).allowed
    admin = Redis.from_url(private.url)
    await admin.flushall()
    await admin.script_flush()  # a restarted Redis also forgets the Lua script
    await admin.aclose()
    assert await store.get("k") is None
    assert (await store.take([bucket])).allowed
    assert store.available
    await store.aclose()


async def test_a_gateway_starts_while_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer()  # a free port, never started
    store = RedisStore(server.url, Metrics())
    caplog.set_level(logging.INFO, logger="gateway.stores.redis_store")
    await store.start()
    assert not store.available
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    with pytest.raises(StoreUnavailable):
        await store.take([Bucket("b", 1, 1)])
    await store.aclose()


async def test_a_lone_timeout_is_a_miss_not_an_outage(private: RedisServer) -> None:
    store = RedisStore(private.url, Metrics(), timeout=0.05)
    await store.start()
    for _ in range(2):
        private.pause()
        for _ in range(TIMEOUTS_TO_OUTAGE - 1):
            with pytest.raises(StoreUnavailable):
                await store.get("k")
        private.resume()
        assert await store.get("k") is None, "a success resets the count of timeouts"
    assert store.available
    assert outages(store) == 0
    await store.aclose()


async def test_a_full_volatile_lru_redis_evicts_answers_never_buckets(
    private: RedisServer,
) -> None:
    admin = Redis.from_url(private.url)
    await admin.config_set("maxmemory", "3mb")
    await admin.config_set("maxmemory-policy", "volatile-lru")  # as the chart and compose run it
    store = RedisStore(private.url, Metrics(), prefix="t:", timeout=2.0)
    await store.start()
    try:
        limits = Limits(requests_per_minute=5, tokens_per_minute=100)
        limiter = RateLimiter(limits, store, Metrics())
        for _ in range(5):
            assert (await limiter.admit("tenant")).allowed
        for i in range(400):  # 4 MB of cached answers into 3 MB
            await store.set(f"answer:{i}", b"x" * 10_000, ttl=300)
        evicted = (await admin.info("stats"))["evicted_keys"]
        assert evicted > 0
        buckets = await admin.keys("t:rl:*")
        assert len(buckets) == 2
        assert not (await limiter.admit("tenant")).allowed, "the spent bucket was kept"
    finally:
        await store.aclose()
        await admin.aclose()
