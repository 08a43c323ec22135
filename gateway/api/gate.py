"""The ASGI layer every request crosses first: API keys, the body-size limit and the request
metrics. It runs before FastAPI parses anything, so a client without a key learns nothing about
the body it sent, and an oversized body is refused before it is buffered whole."""

from __future__ import annotations

from time import perf_counter
from typing import cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.errors import error_response
from gateway.errors import PayloadTooLarge, TandemError
from gateway.state import AppState

OPEN_PATHS = ("/healthz", "/readyz", "/docs", "/openapi.json", "/redoc")
UNRESOLVED = ("-", "-")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return cast(bytes, value).decode("latin-1")
    return None


class Gate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = cast(AppState, scope["app"].state.tandem)
        scope_state = scope.setdefault("state", {})
        scope_state["started"] = perf_counter()
        try:
            scope_state["key_id"] = self._authenticate(scope, state)
            if scope["method"] in ("POST", "PUT", "PATCH"):
                receive = await buffered(scope, receive, state.settings.max_body_bytes)
        except TandemError as exc:
            await error_response(exc)(scope, receive, send)
            self._record(scope, state, exc.status)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._record(scope, state, scope_state.get("final_status", status))

    @staticmethod
    def _authenticate(scope: Scope, state: AppState) -> str | None:
        path: str = scope["path"]
        if path.startswith(OPEN_PATHS) or (
            path.startswith("/metrics") and not state.settings.metrics_require_auth
        ):
            return None
        if not path.startswith(("/v1/", "/metrics")):
            return None
        return state.keys.check(_header(scope, b"authorization"))

    @staticmethod
    def _record(scope: Scope, state: AppState, status: int) -> None:
        if not scope["path"].startswith("/v1/") or scope["method"] != "POST":
            return
        model, policy = scope["state"].get("labels", UNRESOLVED)
        state.metrics.record(model, policy, status, perf_counter() - scope["state"]["started"])


async def buffered(scope: Scope, receive: Receive, limit: int) -> Receive:
    """Read the whole body (refusing past `limit`), then replay it to the app."""
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
    body = b"".join(chunks)
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
