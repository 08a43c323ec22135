"""The two model routes, served without FastAPI's router.

Between the gate and a model route FastAPI spends about 0.28 ms of CPU per request (its
exception middleware, router, request handler and dependency solver, and a `json.loads` before
pydantic validates the result): a quarter of what Tandem adds to the time to first token
(README, "The relay's hot path"). For `POST /v1/chat/completions` and `POST /v1/completions`
the gate calls the same endpoint functions itself, after one `model_validate_json` of the body
it has already read; errors map to the same envelopes. The routes stay declared in FastAPI for
the OpenAPI schema.

Their body must be declared JSON (`application/json` or `application/*+json`), else 415: a web
page may POST `text/plain` or a form to any origin without a CORS preflight, so a body read as
JSON whatever its type would let any page the user visits call a keyless local Tandem.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.api.body_guard import check_body_items
from gateway.api.chat import create_chat_completion
from gateway.api.completions import create_completion
from gateway.api.disconnect import until_disconnected
from gateway.api.errors import error_response, validation_error
from gateway.api.responses import CLIENT_CLOSED, WATCHED
from gateway.api.state import AppState
from gateway.core.errors import TandemError, UnsupportedMediaType
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest

Endpoint = Callable[[Any, Request, AppState], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class HotRoute:
    model: type[BaseModel]
    endpoint: Endpoint


ROUTES = {
    "/v1/chat/completions": HotRoute(ChatCompletionRequest, create_chat_completion),
    "/v1/completions": HotRoute(CompletionRequest, create_completion),
}


def hot_route(method: str, path: str, content_type: str | None) -> HotRoute | None:
    """The route to serve here, if the request is one of them; 415 unless its body is JSON."""
    route = ROUTES.get(path)
    if route is None or method != "POST":
        return None
    if content_type is None or not parsed_as_json(content_type):
        raise UnsupportedMediaType(
            "Send the request body as JSON, with 'Content-Type: application/json'.",
            param="content-type",
        )
    return route


def parsed_as_json(content_type: str) -> bool:
    """FastAPI's own rule for a body it reads as JSON: application/json or application/*+json."""
    maintype, _, subtype = content_type.split(";", 1)[0].strip().lower().partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


async def serve(
    route: HotRoute, body: bytes, scope: Scope, receive: Receive, send: Send, state: AppState
) -> None:
    """Answer one model call; a client that leaves before the response starts cancels it."""
    request = Request(scope, receive)
    setattr(request.state, WATCHED, True)
    response = await until_disconnected(receive, respond(route, body, request, state))
    if response is None:
        request.state.facts.status = CLIENT_CLOSED  # nobody is left to answer
        return
    await response(scope, receive, send)


async def respond(route: HotRoute, body: bytes, request: Request, state: AppState) -> Response:
    try:
        check_body_items(body, state.settings.max_json_items)
        parsed = route.model.model_validate_json(body)
    except ValidationError as exc:
        return rejected(request, validation_error(list(exc.errors())))
    except TandemError as exc:
        return rejected(request, exc)
    try:
        return await route.endpoint(parsed, request, state)
    except TandemError as exc:
        return rejected(request, exc)


def rejected(request: Request, exc: TandemError) -> Response:
    request.state.facts.error_code = exc.code
    return error_response(exc)
