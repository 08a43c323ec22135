"""`POST /v1/chat/completions`."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.cached import cached_events
from gateway.api.deps import State
from gateway.api.responses import respond
from gateway.core.bounds import check_limits
from gateway.core.protocol import ChatCompletionRequest, SamplingFields

log = logging.getLogger(__name__)
router = APIRouter()


def label(request: Request, alias: str, policy: str, stream: bool) -> None:
    """Name the request in its metrics, log line and span, once its alias is resolved."""
    facts = request.state.facts
    facts.model, facts.policy, facts.stream = alias, policy, stream


def note_unknown_fields(body: SamplingFields) -> None:
    unknown = body.unknown_fields()
    if unknown:
        log.info("request fields outside the OpenAI schema, passed on: %s", ", ".join(unknown))


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, state: State
) -> Response:
    route, policy, params = state.router.resolve(body.model, body.options())
    label(request, route.alias, policy.name, body.stream)
    check_limits(body, route.limits)
    note_unknown_fields(body)
    events = await cached_events(request, state, body, policy, params, policy.chat)
    return await respond(request, state, body, "chat", body.n, events)
