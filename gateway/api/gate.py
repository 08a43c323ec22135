"""The ASGI layer every request crosses first: request id, API keys, the body-size limit, and at
the end the request's metrics, access log line and trace span. It runs before FastAPI parses
anything, so a client without a key learns nothing about the body it sent, and an oversized body
is refused before it is buffered whole."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.errors import error_response
from gateway.api.hot import hot_route
from gateway.api.hot import serve as serve_hot
from gateway.api.keys import ApiKey
from gateway.api.limits import admit, tandem_headers
from gateway.api.state import AppState
from gateway.core.context import RequestFacts, accept_request_id, request_id
from gateway.core.errors import (
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    TandemError,
    internal_error,
)
from gateway.observability import tracing
from gateway.observability.logs import ACCESS_LOGGER

OPEN_PATHS = ("/healthz", "/readyz", "/docs", "/openapi.json", "/redoc")
access_log = logging.getLogger(ACCESS_LOGGER)
log = logging.getLogger(__name__)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return cast(bytes, value).decode("latin-1")
    return None


def is_api_call(facts: RequestFacts) -> bool:
    return facts.method == "POST" and facts.path.startswith("/v1/")


class Gate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.in_flight = 0  # model calls being served by this worker now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = cast(AppState, scope["app"].state.tandem)
        rid = accept_request_id(_header(scope, b"x-request-id"))
        facts = RequestFacts(rid, scope["method"], scope["path"])
        scope.setdefault("state", {})["facts"] = facts
        token = request_id.set(rid)
        try:
            if is_api_call(facts):
                await self._serve_api_call(scope, receive, self._stamped(scope, send), state)
            else:
                await self._serve(scope, receive, self._stamped(scope, send), state)
        finally:
            request_id.reset(token)

    async def _serve_api_call(
        self, scope: Scope, receive: Receive, send: Send, state: AppState
    ) -> None:
        """A model call: counted in flight, then measured, logged and traced once it is over."""
        facts: RequestFacts = scope["state"]["facts"]
        span = state.tracer.start(facts) if state.tracer else None
        traced = tracing.current.set((state.tracer, span)) if state.tracer and span else None
        state.metrics.in_flight.inc()
        limit = state.settings.max_in_flight
        try:
            if limit and self.in_flight >= limit:
                await refuse(overloaded(limit), scope, receive, send)
                return
            self.in_flight += 1
            try:
                await self._serve(scope, receive, send, state)
            finally:
                self.in_flight -= 1
        finally:
            state.metrics.in_flight.dec()
            finish(state, facts)
            if span is not None and state.tracer is not None:
                state.tracer.finish(span, facts)
            if traced is not None:
                tracing.current.reset(traced)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, state: AppState) -> None:
        """Serve the request; a failure nothing mapped and nothing answered yet is a 500 in the
        OpenAI envelope here, stamped, counted and logged like any other response (FastAPI's
        stack answers its own; the model routes the gate serves have only this)."""
        try:
            await self._dispatch(scope, receive, send, state)
        except Exception:
            facts: RequestFacts = scope["state"]["facts"]
            if facts.answered:
                raise  # answered, or mid-stream: the server closes the connection
            log.exception("unhandled error")
            error = internal_error()
            facts.error_code = error.type  # a bug has no code of its own
            await error_response(error)(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, state: AppState) -> None:
        body: bytes | None = None
        try:
            key = self._authenticate(scope, state)
            scope["state"]["key"] = key
            scope["state"]["key_id"] = key.key_id if key is not None else None
            scope["state"]["facts"].key_name = key.name if key is not None else None
            await admit(scope, state)
            route = hot_route(scope["method"], scope["path"], _header(scope, b"content-type"))
            if scope["method"] in ("POST", "PUT", "PATCH"):
                settings = state.settings
                async with asyncio.timeout(settings.body_timeout_seconds):
                    body = await read_body(scope, receive, settings.max_body_bytes)
        except TimeoutError:
            await refuse(body_timeout(state.settings.body_timeout_seconds), scope, receive, send)
            return
        except TandemError as exc:
            await refuse(exc, scope, receive, send)
            return
        if body is None:
            await self.app(scope, receive, send)
            return
        if route is not None:
            await serve_hot(route, body, scope, receive, send, state)
        else:
            await self.app(scope, replaying(body, receive), send)

    @staticmethod
    def _stamped(scope: Scope, send: Send) -> Send:
        """`send` that adds the request id, rate-limit and cache headers to the response and
        notes its status. One wrapper: every streamed chunk passes through it."""
        facts: RequestFacts = scope["state"]["facts"]

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                facts.status = message["status"]
                facts.answered = True
                headers = [
                    *message.get("headers", []),
                    *tandem_headers(scope),
                    (b"x-request-id", facts.request_id.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        return stamped

    @staticmethod
    def _authenticate(scope: Scope, state: AppState) -> ApiKey | None:
        path: str = scope["path"]
        if path.startswith(OPEN_PATHS) or (
            path.startswith("/metrics") and not state.settings.metrics_require_auth
        ):
            return None
        if not path.startswith(("/v1/", "/metrics")):
            return None
        return state.keys.check(_header(scope, b"authorization"))


async def refuse(error: TandemError, scope: Scope, receive: Receive, send: Send) -> None:
    scope["state"]["facts"].error_code = error.code
    await error_response(error)(scope, receive, send)


def overloaded(limit: int) -> Overloaded:
    return Overloaded(
        f"The server is serving its limit of {limit} requests at once; retry shortly.",
        retry_after=1,
    )


def body_timeout(seconds: float) -> RequestTimeout:
    return RequestTimeout(f"The request body did not arrive within {seconds:g} seconds.")


def finish(state: AppState, facts: RequestFacts) -> None:
    """Metrics and the access log line for one API call, once it is over."""
    seconds = facts.elapsed()
    state.metrics.record(facts.model, facts.policy, facts.status, seconds)
    if facts.degraded:
        state.metrics.degraded.labels(facts.model, facts.policy).inc()
    if access_log.isEnabledFor(logging.INFO):  # the line costs a json.dumps per request
        access_log.info(json.dumps(access_fields(facts, seconds), separators=(",", ":")))


def access_fields(facts: RequestFacts, seconds: float) -> dict[str, Any]:
    """What the access line says: ids, the key's name, route, status, timings, token counts;
    never a prompt, an answer or a key."""
    return {
        "event": "request",
        "request_id": facts.request_id,
        "method": facts.method,
        "path": facts.path,
        "model": facts.model,
        "policy": facts.policy,
        "key": facts.key_name,
        "status": facts.status,
        "stream": facts.stream,
        "duration_ms": round(seconds * 1000, 2),
        "ttft_ms": None if facts.ttft is None else round(facts.ttft * 1000, 2),
        "prompt_tokens": facts.prompt_tokens,
        "completion_tokens": facts.completion_tokens,
        "tokens": facts.tokens,
        "degraded": facts.degraded,
        "error_code": facts.error_code,
    }


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refused past `limit`."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` that gives the app the body already read, then what the client sends next."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
