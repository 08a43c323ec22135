"""A request's events through the response cache: a hit replays the stored answer; otherwise the
policy answers, its usage is charged to the caller's token limit, and a complete answer is
stored. The outcome goes to `request.state.cache` for the `x-tandem-cache` header. A request
that runs reserves its estimated tokens first (a 429 when the key's bucket cannot hold them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

from gateway.api.limits import own_limits
from gateway.api.state import AppState
from gateway.api.token_budget import output_estimate, prompt_estimate
from gateway.core.events import EventStream
from gateway.core.protocol import SamplingFields
from gateway.policies.base import Policy, PolicyParams
from gateway.policies.services import Services, lent

Body = TypeVar("Body", bound=SamplingFields)


async def cached_events(
    request: Request,
    state: AppState,
    body: Body,
    policy: Policy,
    params: PolicyParams,
    produce: Callable[[Body, Any], EventStream],
) -> EventStream:
    services = state.cache
    key_id: str | None = request.state.key_id
    lookup = await services.responses.lookup(body, policy.name, params, policy.backends, key_id)
    request.state.cache = lookup.status
    if lookup.events is not None:
        return services.responses.replay(lookup)
    with lent(Services(services.store, state.metrics, key_id)):  # e.g. the plan cache
        events = produce(body, params)
    if services.limiter is not None:
        limits = own_limits(request.state.key, services.limiter.limits)
        prompt = prompt_estimate(body)
        cost = prompt + output_estimate(body, params)
        reserved = await services.limiter.reserve(key_id, cost, limits)  # or a 429
        events = services.limiter.metered(key_id, events, limits, reserved, prompt)
    return services.responses.record(lookup, events)
