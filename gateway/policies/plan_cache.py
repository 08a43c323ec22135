"""The HAWKEYE plan cache: a planner's chain of thought kept in the app's cache store (Redis
when configured, in memory otherwise), so a repeated conversation skips the planner.

The key is a digest of what determines the plan: the planner's model identity, the normalised
conversation, the prompt template (and its version), the plan budget and the planner's sampling
settings (temperature, top_p, seed: a plan sampled one way is never replayed for another).
Entries are scoped to the caller's API key unless the alias makes them global. A store that
fails is skipped: the planner runs as if nothing were cached, and the plan is not kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal

from gateway.core.protocol import ChatMessage
from gateway.observability.metrics import Metrics
from gateway.policies.hawkeye_prompts import TEMPLATE_VERSION, normalised
from gateway.stores.cache import Store, StoreUnavailable

log = logging.getLogger(__name__)

FORMAT = "v2"
Result = Literal["hit", "miss", "bypass"]


@dataclass(frozen=True, slots=True)
class CachedPlan:
    text: str
    tokens: int


def plan_key(
    planner_model: str,
    messages: list[ChatMessage],
    template: str,
    budget: int,
    scope: str,
    sampling: tuple[float | None, float | None, int | None] = (None, None, None),
) -> str:
    canonical = {
        "planner": planner_model,
        "conversation": normalised(messages),
        "template": [TEMPLATE_VERSION, template],
        "budget": budget,
        "sampling": list(sampling),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"plan:{FORMAT}:{scope}:{hashlib.sha256(text.encode()).hexdigest()}"


def scope_of(configured: str, key_id: str | None) -> str:
    return "global" if configured == "global" else f"key:{key_id or 'anonymous'}"


class PlanCache:
    """Reads and writes plans for one request; counts lookups as `cache="plan"`."""

    def __init__(self, store: Store, metrics: Metrics | None, key: str, ttl: float) -> None:
        self.store = store
        self.metrics = metrics
        self.key = key
        self.ttl = ttl

    async def get(self) -> CachedPlan | None:
        try:
            blob = await self.store.get(self.key)
        except StoreUnavailable:
            self._count("bypass")
            return None
        plan = _decode(blob) if blob is not None else None
        self._count("hit" if plan is not None else "miss")
        return plan

    async def put(self, plan: CachedPlan) -> None:
        blob = json.dumps({"text": plan.text, "tokens": plan.tokens}, ensure_ascii=False)
        # the store logged its outage; this plan is simply not kept
        with suppress(StoreUnavailable):
            await self.store.set(self.key, blob.encode(), self.ttl)

    def _count(self, result: Result) -> None:
        if self.metrics is not None:
            self.metrics.cache_requests.labels("plan", result).inc()


def _decode(blob: bytes) -> CachedPlan | None:
    try:
        row = json.loads(blob)
        return CachedPlan(str(row["text"]), int(row["tokens"]))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring an unreadable plan cache entry")
        return None
