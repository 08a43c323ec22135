"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from gateway.api.deps import State
from gateway.backends import Backend
from gateway.core.errors import TandemError

router = APIRouter()
READY_TIMEOUT = 5.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: answers without asking any dependency."""
    return {"status": "ok"}


async def _probe(backend: Backend) -> str:
    try:
        await asyncio.wait_for(backend.health(), READY_TIMEOUT)
    except TandemError as exc:
        return exc.message
    except TimeoutError:
        return f"backend '{backend.name}' did not answer a health check in time"
    return "ok"


@router.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    """Ready: every backend of the catalog can serve now."""
    backends = state.router.backends
    results = await asyncio.gather(*(_probe(b) for b in backends.values()))
    report = dict(zip(backends, results, strict=True))
    ready = all(result == "ok" for result in results)
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "backends": report},
        status_code=200 if ready else 503,
    )


@router.get("/metrics")
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
