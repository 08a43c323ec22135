"""Everything a request handler may reach, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.api.auth import KeyChecker
from gateway.api.readiness import HealthCache
from gateway.api.routing import Router
from gateway.core.config import Settings
from gateway.observability.metrics import Metrics
from gateway.observability.tracing import RequestTracer
from gateway.stores.setup import CacheServices


@dataclass
class AppState:
    settings: Settings
    router: Router
    metrics: Metrics
    keys: KeyChecker
    tracer: RequestTracer | None = None
    cache: CacheServices = field(default_factory=CacheServices.in_memory)
    health: HealthCache = field(default_factory=HealthCache)
