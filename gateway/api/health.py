"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from gateway.api.deps import State
from gateway.api.readiness import readiness, replica_addresses, replica_detail

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: answers without asking any dependency."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    """Ready (200) while every alias can serve, degraded or not; 503 when one cannot."""
    health = await state.health.results(state.router.backends)
    ready = readiness(state.router, health)
    body: dict[str, object] = {
        "status": ready.status,
        "backends": ready.backends,
        "models": ready.models,
    }
    if replicas := replica_detail(state.router.backends):
        body["replicas"] = replicas
    return JSONResponse(body, status_code=503 if ready.status == "unavailable" else 200)


@router.get("/metrics")
async def metrics(state: State) -> Response:
    state.metrics.record_replicas(replica_addresses(state.router.backends))
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
