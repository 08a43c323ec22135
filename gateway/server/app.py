"""The FastAPI application: state built in the lifespan, routes, the gate, error mapping."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api import chat, completions, errors, health, models, playground
from gateway.api.auth import KeyChecker, open_access_warning
from gateway.api.cors import with_cors
from gateway.api.gate import Gate
from gateway.api.keys import load_keys
from gateway.api.routing import Router, build_router
from gateway.api.state import AppState
from gateway.api.streaming import BODY_SEND
from gateway.core.config import CatalogError, Settings, load_catalog, settings_from_env
from gateway.observability.collector import Collector
from gateway.observability.logs import configure_logging
from gateway.observability.metrics import Metrics
from gateway.observability.tracing import RequestTracer, tracer_for
from gateway.stores.setup import cache_services

log = logging.getLogger(__name__)


def build_state(settings: Settings, tracer: RequestTracer | None = None) -> AppState:
    """Validate everything that can be validated without starting a backend."""
    catalog = load_catalog(settings)
    router = build_router(catalog, str(settings.catalog_path()), settings.limits)
    keys = KeyChecker(load_keys(settings, router.routes))
    metrics = Metrics()
    metrics.per_key = settings.metrics_per_key
    services = cache_services(settings, metrics, keys.any_own_limits)
    return AppState(settings, router, metrics, keys, tracer, services)


async def start_backends(router: Router) -> None:
    await asyncio.gather(*(backend.start() for backend in router.backends.values()))


async def close_backends(router: Router) -> None:
    await asyncio.gather(
        *(backend.aclose() for backend in router.backends.values()), return_exceptions=True
    )


class TandemApp(FastAPI):
    """FastAPI behind the gate. Every HTTP request meets the gate first (`Gate` in
    gateway/api/gate.py), which serves the two model routes itself and hands the rest to
    FastAPI's own stack: a model call crosses none of FastAPI's middleware. The server's own
    `send` is left in the scope for streamed bodies (`BODY_SEND`): every wrapper between it and
    the endpoint watches only for the response's start, and a stream sends every chunk."""

    def __init__(self, **kwargs: Any) -> None:
        # Tandem traces each request itself (gateway/observability/tracing.py, the GenAI
        # conventions); FastAPI's own OpenTelemetry would look up the global providers on every
        # request
        super().__init__(telemetry={"tracing": False, "metrics": False, "logs": False}, **kwargs)
        self.gate: ASGIApp = Gate(self._framework)

    async def _framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        state = scope.setdefault("state", {})
        state[BODY_SEND] = send
        try:
            await self.gate(scope, receive, send)
        finally:
            # The server's send is a method of the object that holds the scope: left in place,
            # every request would end as a reference cycle for the garbage collector to find.
            del state[BODY_SEND]


def create_app(settings: Settings | None = None, tracer: RequestTracer | None = None) -> FastAPI:
    """The app; `tracer` replaces the one `TANDEM_OTLP_ENDPOINT` would build (tests use it)."""
    settings = settings or settings_from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings, tracer or tracer_for(settings.otlp_endpoint))
        app.state.tandem = state
        await start_backends(state.router)
        try:
            await state.router.check_started()
        except CatalogError as exc:
            log.error("bad catalog: %s", exc)  # one line to read before uvicorn's own report
            await close_backends(state.router)
            raise
        await state.cache.start()
        interval = settings.gc_interval_seconds
        collector = Collector(interval) if interval else None
        if collector is not None:
            collector.start()
        log.info(
            "serving %d model aliases: %s",
            len(state.router.routes),
            ", ".join(state.router.aliases()),
        )
        warning = open_access_warning(settings.host, state.keys)
        if warning is not None:
            log.warning(warning)
        try:
            yield
        finally:
            if collector is not None:
                await collector.stop()
            await close_backends(state.router)
            await state.cache.aclose()
            if state.tracer is not None:
                state.tracer.shutdown()

    app = TandemApp(title="Tandem", version="0.1.0", lifespan=lifespan)
    app.gate = with_cors(app.gate, settings.cors_origins)
    for module in (chat, completions, models, health, playground):
        app.include_router(module.router)
    errors.install(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers, which rebuild settings from `TANDEM_*`."""
    settings = settings_from_env()
    configure_logging(settings.log_level)
    return create_app(settings)
