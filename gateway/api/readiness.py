"""Readiness: can every alias serve, possibly degraded, judged from cached backend health.

A backend down behind a role the policy can do without (collab's large model, HAWKEYE's
planner) degrades its aliases but keeps the gateway ready: taking every replica out of a
Service over it would turn the designed degradation into an outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.api.routing import Router
from gateway.backends import Backend
from gateway.core.errors import TandemError

AliasState = Literal["ready", "degraded", "unavailable"]
PROBE_TIMEOUT = 5.0
HEALTH_TTL = 2.0


async def probe(backend: Backend) -> str:
    """'ok', or why the backend cannot serve now (sanitised: no upstream address)."""
    try:
        await asyncio.wait_for(backend.health(), PROBE_TIMEOUT)
    except TandemError as exc:
        return exc.message
    except TimeoutError:
        return f"backend '{backend.name}' did not answer a health check in time"
    return "ok"


class HealthCache:
    """Every backend's last health, probed at most once per `ttl` seconds: concurrent probes
    (a kubelet per replica, a dashboard) share one round of upstream health checks."""

    def __init__(self, ttl: float = HEALTH_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._round: asyncio.Future[dict[str, str]] | None = None
        self._started = -float("inf")

    async def results(self, backends: Mapping[str, Backend]) -> dict[str, str]:
        if self._round is None or self.clock() - self._started >= self.ttl:
            self._started = self.clock()
            self._round = asyncio.ensure_future(_probe_all(backends))
        return dict(await asyncio.shield(self._round))


async def _probe_all(backends: Mapping[str, Backend]) -> dict[str, str]:
    results = await asyncio.gather(*(probe(b) for b in backends.values()))
    return dict(zip(backends, results, strict=True))


def replica_detail(backends: Mapping[str, Backend]) -> dict[str, dict[str, str]]:
    """For each backend that lists replicas: each replica's URL (no credentials), up or down."""
    detail = {}
    for name, backend in backends.items():
        if states := backend.replica_states():
            detail[name] = {s.url: "up" if s.up else "down" for s in states}
    return detail


def replica_addresses(backends: Mapping[str, Backend]) -> dict[str, dict[str, bool]]:
    """For each backend that lists replicas: each replica's host:port, and whether it is up."""
    states = {name: backend.replica_states() for name, backend in backends.items()}
    return {
        name: {s.address: s.up for s in replicas} for name, replicas in states.items() if replicas
    }


@dataclass(frozen=True)
class Readiness:
    backends: dict[str, str]
    models: dict[str, AliasState]

    @property
    def status(self) -> AliasState:
        states = set(self.models.values())
        if "unavailable" in states:
            return "unavailable"
        return "degraded" if "degraded" in states else "ready"


def readiness(router: Router, health: Mapping[str, str]) -> Readiness:
    """Each alias is unavailable when a backend it cannot do without is down, degraded when
    only one it can do without is."""
    models: dict[str, AliasState] = {}
    for alias, route in router.routes.items():
        needs = route.policy.role_needs(route.params)
        down = [
            need for role, need in needs.items() if health.get(route.spec.backends[role]) != "ok"
        ]
        models[alias] = "unavailable" if "essential" in down else "degraded" if down else "ready"
    return Readiness(dict(health), models)
