"""`POST /v1/chat/completions`."""

from __future__ import annotations

import logging
from itertools import islice

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.cached import cached_events
from gateway.api.deps import State
from gateway.api.responses import respond
from gateway.core.bounds import check_limits
from gateway.core.protocol import ChatCompletionRequest, SamplingFields

log = logging.getLogger(__name__)
router = APIRouter()
#: how many unknown field names a log line shows, and how much of each
SHOWN_NAMES = 5
NAME_CHARS = 40


def label(request: Request, alias: str, policy: str, stream: bool) -> None:
    """Name the request in its metrics, log line and span, once its alias is resolved."""
    facts = request.state.facts
    facts.model, facts.policy, facts.stream = alias, policy, stream


def note_unknown_fields(body: SamplingFields) -> None:
    """At debug level, how many fields outside the schema a request sent, and the first few
    names, truncated and escaped: a name is the client's text (a newline in one could forge a
    log line) and a body may hold thousands."""
    extra = body.model_extra
    if not extra or not log.isEnabledFor(logging.DEBUG):
        return
    shown = [printable_name(name) for name in islice(extra, SHOWN_NAMES)]
    more = ", ..." if len(extra) > SHOWN_NAMES else ""
    log.debug(
        "%d request fields outside the OpenAI schema, passed on: %s%s",
        len(extra),
        ", ".join(shown),
        more,
    )


def printable_name(name: str) -> str:
    """The name in quotes, ASCII only, control characters escaped, at most NAME_CHARS long."""
    cut = name[:NAME_CHARS] + ("..." if len(name) > NAME_CHARS else "")
    return ascii(cut)


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, state: State
) -> Response:
    route, policy, params = state.router.resolve(body.model, body.options(), request.state.key)
    label(request, route.alias, policy.name, body.stream)
    check_limits(body, route.limits)
    note_unknown_fields(body)
    events = await cached_events(request, state, body, policy, params, policy.chat)
    return await respond(request, state, body, "chat", body.n, events)
