"""The OpenAI wire, read: streamed chunks into typed events, usage, and upstream errors (status
codes, error bodies, in-band errors, transport failures) into Tandem's. The one place where an
upstream's answer becomes Tandem's events and errors; `gateway.backends.openai_http` speaks
HTTP.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import aiohttp
import orjson

from gateway.core.errors import (
    MAX_RETRY_AFTER,
    InvalidRequest,
    RateLimited,
    TandemError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.core.events import Delta, Event, Finish, Usage

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 4096
RETRY_AFTER_UNAVAILABLE = 5.0
ChunkParser = Any  # Callable[[dict[str, Any]], Iterator[Event]]; kept loose for speed


def chunk_object(payload: bytes, backend: str) -> dict[str, Any]:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise UpstreamBadResponse(f"backend '{backend}' sent a chunk that is not JSON") from None
    if not isinstance(chunk, dict):
        raise UpstreamBadResponse(f"backend '{backend}' sent a chunk that is not an object")
    if "error" in chunk or chunk.get("object") == "error":
        raise UpstreamBadResponse(f"backend '{backend}' failed: {in_band_message(chunk, backend)}")
    return chunk


def chunk_events(to_events: ChunkParser, chunk: dict[str, Any], backend: str) -> list[Event]:
    try:
        return to_events(chunk)  # type: ignore[no-any-return]
    except (AttributeError, TypeError, ValueError):
        log.warning("backend %s sent a malformed choice: %.300r", backend, chunk)
        raise UpstreamBadResponse(f"backend '{backend}' sent a malformed choice") from None


def _checked(index: Any, *texts: Any) -> None:
    """Raise TypeError unless `index` is an int and each text a string or None: a chunk is
    relayed field by field, and a wrong type would fail later, where it is a 500."""
    if type(index) is not int:
        raise TypeError("index")
    for text in texts:
        if text is not None and type(text) is not str:
            raise TypeError("text")


def _wire_shapes(tool_calls: Any, logprobs: Any) -> None:
    if tool_calls is not None and not (
        type(tool_calls) is list
        and all(type(c) is dict and type(c.get("function") or {}) is dict for c in tool_calls)
    ):
        raise TypeError("tool_calls")
    if logprobs is not None and type(logprobs) is not dict:
        raise TypeError("logprobs")


def chat_events(chunk: dict[str, Any]) -> list[Event]:
    """Raises TypeError or AttributeError for a chunk of the wrong shape."""
    events: list[Event] = []
    for choice in _choice_list(chunk):
        index = choice.get("index", 0)
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        tool_calls = delta.get("tool_calls")
        logprobs = choice.get("logprobs")
        _checked(index, text, reasoning, choice.get("finish_reason"))
        if tool_calls is not None or logprobs is not None:
            _wire_shapes(tool_calls, logprobs)
        if text or reasoning or tool_calls or logprobs:
            events.append(Delta(index, text, "main", reasoning, tool_calls, logprobs))
        if choice.get("finish_reason"):
            events.append(Finish(index, choice["finish_reason"]))
    return events


def completion_events(chunk: dict[str, Any]) -> list[Event]:
    """Raises TypeError or AttributeError for a chunk of the wrong shape."""
    events: list[Event] = []
    for choice in _choice_list(chunk):
        index = choice.get("index", 0)
        text = choice.get("text") or ""
        logprobs = choice.get("logprobs")
        _checked(index, text, choice.get("finish_reason"))
        if logprobs is not None:
            _wire_shapes(None, logprobs)
        if text or logprobs:
            events.append(Delta(index, text, "main", logprobs=logprobs))
        if choice.get("finish_reason"):
            events.append(Finish(index, choice["finish_reason"]))
    return events


def _choice_list(chunk: dict[str, Any]) -> list[Any]:
    choices = chunk.get("choices") or []
    if type(choices) is not list:
        raise TypeError("choices")
    return choices


def parse_usage(raw: Any, backend: str) -> Usage:
    try:
        extra = {k: v for k, v in raw.items() if k.endswith("_details") and v}
        return Usage(int(raw["prompt_tokens"]), int(raw["completion_tokens"]), extra or None)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UpstreamBadResponse(f"backend '{backend}' sent malformed usage") from None


def error_message(body: Any) -> str:
    """The message of any of the error shapes upstream servers use."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message") or inner.get("detail")
            if message:
                return str(message)[:500]
        elif isinstance(inner, str):
            return inner[:500]
        if "detail" in body:
            return str(body["detail"])[:500]
    return "no detail given"


def in_band_message(chunk: dict[str, Any], backend: str) -> str:
    """An error sent inside a stream: its message when the upstream says it is the client's
    (a 4xx code), else a generic one, the detail logged (it may name the upstream's internals)."""
    inner = chunk.get("error")
    code = inner.get("code") if isinstance(inner, dict) else None
    message = error_message(chunk)
    if type(code) is int and 400 <= code < 500:
        return message
    log.warning("backend %s failed in its stream: %r", backend, message)
    return "the model server had an error"


def translate_status(backend: str, response: aiohttp.ClientResponse, body: bytes) -> TandemError:
    """An upstream's 4xx message is the client's to read; a 5xx's detail is only logged."""
    status = response.status
    try:
        message = error_message(json.loads(body))
    except (json.JSONDecodeError, UnicodeDecodeError):
        message = body.decode("utf-8", "replace").strip()[:500] or "no detail given"
    retry_after = _retry_after(response)
    if status >= 500:
        log.warning("backend %s answered %s: %r", backend, status, message)
    if status in (400, 413, 422):
        return InvalidRequest(f"backend '{backend}' rejected the request: {message}")
    if status == 429:
        return RateLimited(f"backend '{backend}' is rate limited", retry_after=retry_after or 1)
    if status in (401, 403):
        log.warning("backend %s refused the gateway's credentials (%s)", backend, status)
        return UpstreamBadResponse(f"backend '{backend}' refused the gateway's credentials")
    if status in (502, 503, 504):
        return UpstreamUnavailable(
            f"backend '{backend}' is unavailable ({status})",
            retry_after=retry_after or RETRY_AFTER_UNAVAILABLE,
        )
    if status >= 500:
        return UpstreamBadResponse(f"backend '{backend}' failed with status {status}")
    return UpstreamBadResponse(f"backend '{backend}' failed with status {status}: {message}")


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    """Seconds from a Retry-After header, within [0, MAX_RETRY_AFTER]; None when absent or not
    a number (an HTTP date, `inf` and `nan` included)."""
    try:
        seconds = float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
    if not math.isfinite(seconds):
        return None if math.isnan(seconds) else MAX_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def translate_transport_error(backend: str, exc: BaseException) -> UpstreamError:
    log.warning("backend %s: %s", backend, type(exc).__name__)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamUnavailable(
            f"backend '{backend}' did not accept a connection in time",
            retry_after=RETRY_AFTER_UNAVAILABLE,
        )
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"backend '{backend}' did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnavailable(
            f"backend '{backend}' is unreachable", retry_after=RETRY_AFTER_UNAVAILABLE
        )
    return UpstreamBadResponse(f"backend '{backend}' closed the connection unexpectedly")
