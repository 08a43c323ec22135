"""`POST /v1/completions` (the legacy API, which token-level peers speak)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.cached import cached_events
from gateway.api.chat import label, note_unknown_fields
from gateway.api.deps import State
from gateway.api.responses import respond
from gateway.core.bounds import check_limits
from gateway.core.protocol import CompletionRequest

router = APIRouter()


@router.post("/v1/completions", response_model=None)
async def create_completion(body: CompletionRequest, request: Request, state: State) -> Response:
    route, policy, params = state.router.resolve(body.model, body.options(), request.state.key)
    label(request, route.alias, policy.name, body.stream)
    check_limits(body, route.limits)
    note_unknown_fields(body)
    events = await cached_events(request, state, body, policy, params, policy.complete)
    return await respond(request, state, body, "completion", 0, events)
