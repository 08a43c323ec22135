"""Everything a request handler may reach, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.auth import KeyChecker
from gateway.cache_setup import CacheServices
from gateway.config import Settings
from gateway.metrics import Metrics
from gateway.routing import Router
from gateway.tracing import RequestTracer


@dataclass
class AppState:
    settings: Settings
    router: Router
    metrics: Metrics
    keys: KeyChecker
    tracer: RequestTracer | None = None
    cache: CacheServices = field(default_factory=CacheServices.in_memory)
