"""The cache store, response cache and rate limiter one app shares, built from its settings."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.config import Settings
from gateway.observability.metrics import Metrics
from gateway.stores.cache import MemoryStore, Store
from gateway.stores.ratelimit import Limits, RateLimiter
from gateway.stores.redis_store import RedisStore
from gateway.stores.response_cache import CacheConfig, ResponseCache


@dataclass
class CacheServices:
    store: Store
    responses: ResponseCache
    limiter: RateLimiter | None = None

    @classmethod
    def in_memory(cls) -> CacheServices:
        store = MemoryStore()
        return cls(store, ResponseCache(store, CacheConfig(), Metrics()))

    async def start(self) -> None:
        await self.store.start()

    async def aclose(self) -> None:
        await self.responses.aclose()
        await self.store.aclose()


def cache_services(
    settings: Settings, metrics: Metrics, per_key_limits: bool = False
) -> CacheServices:
    """`per_key_limits`: some API key has limits of its own, so a limiter is needed even when
    the global limits are off."""
    store: Store
    if settings.redis_url:
        store = RedisStore(
            settings.redis_url,
            metrics,
            timeout=settings.redis_timeout_ms / 1000,
            prefix=settings.redis_prefix,
        )
    else:
        store = MemoryStore(settings.cache_memory_bytes)
    config = CacheConfig(
        enabled=settings.cache_enabled,
        ttl=settings.cache_ttl_seconds,
        scope=settings.cache_scope,
        max_entry_bytes=settings.cache_max_entry_bytes,
    )
    limits = Limits(settings.rate_limit_rpm, settings.rate_limit_tpm)
    limiter = RateLimiter(limits, store, metrics) if limits.enabled or per_key_limits else None
    return CacheServices(store, ResponseCache(store, config, metrics), limiter)
