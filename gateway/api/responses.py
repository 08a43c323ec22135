"""From a policy's event stream to an HTTP response: SSE when asked to stream, JSON otherwise."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine
from contextlib import aclosing, suppress
from time import perf_counter
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.responses import Response

from gateway.api.aggregate import ResponseBuilder
from gateway.api.sse import ChunkWriter, Envelope, Kind, sse_stream
from gateway.errors import TandemError, UpstreamBadResponse
from gateway.events import Delta, EventStream, Report
from gateway.metrics import Metrics
from gateway.protocol import SamplingFields
from gateway.state import AppState

CLIENT_CLOSED = 499
PING_SECONDS = 15


def new_id(kind: Kind) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex


async def observed(
    events: EventStream, metrics: Metrics, labels: tuple[str, str], request: Request
) -> EventStream:
    """The policy's events, unchanged, with TTFT, tokens and the final status recorded."""
    started = request.state.started
    seen_first = False
    status = 200
    try:
        async with aclosing(events):
            async for event in events:
                if not seen_first and isinstance(event, Delta):
                    seen_first = True
                    metrics.ttft.labels(*labels).observe(perf_counter() - started)
                elif isinstance(event, Report):
                    for source, count in event.tokens.items():
                        metrics.tokens.labels(labels[0], source).inc(count)
                yield event
    except TandemError as exc:
        status = exc.status
        raise
    except (asyncio.CancelledError, GeneratorExit):
        status = CLIENT_CLOSED
        raise
    except Exception:
        status = 500
        raise
    finally:
        request.state.final_status = status


async def respond(
    request: Request,
    state: AppState,
    body: SamplingFields,
    kind: Kind,
    choices: int,
    events: EventStream,
) -> Response:
    envelope = Envelope(kind, new_id(kind), int(time.time()), body.model)
    stream = observed(events, state.metrics, request.state.labels, request)
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        raise UpstreamBadResponse("the model produced no output") from None
    if body.stream:
        writer = ChunkWriter(envelope, body.include_usage, body.options().provenance)
        return EventSourceResponse(
            sse_stream(writer, choices, first, stream),
            sep="\n",
            ping=PING_SECONDS,
            shutdown_grace_period=state.settings.shutdown_grace_seconds,
        )
    builder = ResponseBuilder(envelope)
    builder.add(first)
    if not await until_disconnected(request, consume(stream, builder)):
        return Response(status_code=CLIENT_CLOSED)  # nobody is left to read it
    return JSONResponse(builder.body())


async def consume(stream: EventStream, builder: ResponseBuilder) -> None:
    async with aclosing(stream):
        async for event in stream:
            builder.add(event)


async def until_disconnected(request: Request, work: Coroutine[Any, Any, None]) -> bool:
    """Run `work`, cancelling it if the client goes away first (a non-streaming client that
    hangs up must not keep a model busy). True when the work finished."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False
    task.result()
    return True


async def wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
