"""Readiness: an alias is unavailable only when a backend it cannot do without is down."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.api.readiness import HealthCache, readiness
from gateway.api.routing import Route, Router
from gateway.backends.echo import EchoBackend, EchoConfig
from gateway.core.config import AliasSpec
from gateway.core.errors import UpstreamUnavailable
from gateway.policies import policies


class Flaky(EchoBackend):
    """An echo model whose health the test sets, counting the checks it answers."""

    def __init__(self, name: str) -> None:
        super().__init__(name, EchoConfig())
        self.up = True
        self.checks = 0

    async def health(self) -> None:
        self.checks += 1
        await asyncio.sleep(0.01)
        if not self.up:
            raise UpstreamUnavailable(f"backend '{self.name}' is unreachable")


def route(alias: str, policy: str, backends: dict[str, str], **params: Any) -> Route:
    spec = AliasSpec(policy=policy, backends=backends, params=params)
    built = policies.get(policy)(alias, {role: Flaky(name) for role, name in backends.items()})
    return Route(alias, spec, built, built.Params.model_validate(params))


ROUTER = Router(
    {
        "collab": route("collab", "collab", {"small": "s", "large": "l"}),
        "hawkeye": route("hawkeye", "hawkeye", {"planner": "l", "expander": "s"}),
        "direct-large": route("direct-large", "direct", {"small": "s", "large": "l"}, role="large"),
        "direct-small": route("direct-small", "direct", {"small": "s", "large": "l"}, role="small"),
    },
    {},
)


def test_a_large_model_down_degrades_collab_and_hawkeye_but_not_readiness() -> None:
    ready = readiness(ROUTER, {"s": "ok", "l": "backend 'l' is unreachable"})
    assert ready.models == {
        "collab": "degraded",
        "hawkeye": "degraded",
        "direct-large": "unavailable",
        "direct-small": "ready",
    }
    assert ready.status == "unavailable", "one alias cannot serve at all"
    without_direct_large = Router(
        {a: r for a, r in ROUTER.routes.items() if a != "direct-large"}, {}
    )
    assert readiness(without_direct_large, {"s": "ok", "l": "down"}).status == "degraded"


def test_the_small_model_down_makes_every_alias_on_it_unavailable() -> None:
    ready = readiness(ROUTER, {"s": "down", "l": "ok"})
    assert ready.models["collab"] == ready.models["hawkeye"] == "unavailable"
    assert ready.models["direct-large"] == "ready"


def test_every_backend_up_is_ready() -> None:
    ready = readiness(ROUTER, {"s": "ok", "l": "ok"})
    assert ready.status == "ready"
    assert set(ready.models.values()) == {"ready"}


async def test_health_is_probed_once_per_ttl_and_shared_by_concurrent_callers() -> None:
    now = [0.0]
    cache = HealthCache(ttl=2.0, clock=lambda: now[0])
    backend = Flaky("b")
    rounds = await asyncio.gather(*(cache.results({"b": backend}) for _ in range(5)))
    assert rounds == [{"b": "ok"}] * 5
    assert backend.checks == 1
    backend.up = False
    now[0] = 1.9
    assert await cache.results({"b": backend}) == {"b": "ok"}, "still within the TTL"
    now[0] = 2.0
    assert await cache.results({"b": backend}) == {"b": "backend 'b' is unreachable"}
    assert backend.checks == 2


@pytest.mark.parametrize("policy", ["direct", "collab", "hawkeye"])
def test_each_policy_names_roles_it_has(policy: str) -> None:
    routes = [r for r in ROUTER.routes.values() if r.policy.name == policy]
    for r in routes:
        needs = r.policy.role_needs(r.params)
        assert set(needs) <= set(r.spec.backends)
        assert "essential" in needs.values()
