"""Everything a request handler may reach, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import KeyChecker
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
