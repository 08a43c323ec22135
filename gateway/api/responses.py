"""From a policy's event stream to an HTTP response: SSE when asked to stream, JSON otherwise."""

from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import aclosing
from time import perf_counter

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from gateway.api.aggregate import ResponseBuilder
from gateway.api.disconnect import until_disconnected
from gateway.api.sse import ChunkWriter, Envelope, Kind, sse_stream
from gateway.api.state import AppState
from gateway.api.streaming import SSEResponse
from gateway.core.context import RequestFacts
from gateway.core.errors import TandemError, UpstreamBadResponse, UpstreamError
from gateway.core.events import Delta, EventStream, Report, Usage
from gateway.core.protocol import SamplingFields
from gateway.observability.metrics import Metrics
from gateway.stores.response_cache import Status, tagged

CLIENT_CLOSED = 499
#: `request.state` flag: the caller watches for the client's disconnect (`until_disconnected`)
WATCHED = "disconnect_watched"


def new_id(kind: Kind) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + secrets.token_hex(16)


async def observed(
    events: EventStream, metrics: Metrics, facts: RequestFacts, cache: Status | None = None
) -> EventStream:
    """The policy's events, with what they tell recorded in metrics and `facts`, and the report
    tagged with how the response cache served them (here rather than in a layer of the cache's
    own: every streamed chunk crosses each layer)."""
    labels = (facts.model, facts.policy)
    itl = metrics.itl.tally()
    last: float | None = None
    try:
        async with aclosing(events):
            async for event in events:
                if isinstance(event, Delta):
                    now = perf_counter()
                    if last is None:
                        facts.ttft = now - facts.started
                        metrics.ttft.labels(*labels).observe(facts.ttft)
                    else:
                        itl.observe(now - last)
                    last = now
                elif isinstance(event, Usage):
                    facts.prompt_tokens = event.prompt_tokens
                    facts.completion_tokens = event.completion_tokens
                elif isinstance(event, Report):
                    if cache is not None:
                        event = tagged(event, cache)
                    note_report(metrics, facts, event)
                yield event
    except TandemError as exc:
        note_error(metrics, facts, exc)
        raise
    except (asyncio.CancelledError, GeneratorExit):
        facts.status = CLIENT_CLOSED
        raise
    except Exception:
        facts.status = 500
        raise
    finally:
        metrics.itl.add(labels, itl)


def note_report(metrics: Metrics, facts: RequestFacts, report: Report) -> None:
    facts.tokens = dict(report.tokens)
    facts.degraded = report.degraded
    if report.extra.get("cache") == "hit":
        return  # a replayed answer cost the models nothing
    for source, count in report.tokens.items():
        metrics.tokens.labels(facts.model, source).inc(count)
        if metrics.per_key and facts.key_name is not None:
            metrics.key_tokens.labels(facts.key_name, source).inc(count)
    if report.interventions:
        metrics.interventions.labels(facts.model).inc(report.interventions)
    for seconds in report.large_call_seconds:
        metrics.large_calls.labels(facts.model).inc()
        metrics.large_call_seconds.labels(facts.model).observe(seconds)


def note_error(metrics: Metrics, facts: RequestFacts, exc: TandemError) -> None:
    facts.status = exc.status
    facts.error_code = exc.code
    if isinstance(exc, UpstreamError) and exc.backend is not None:
        metrics.upstream_errors.labels(exc.backend, exc.code or "unknown").inc()


async def respond(
    request: Request,
    state: AppState,
    body: SamplingFields,
    kind: Kind,
    choices: int,
    events: EventStream,
) -> Response:
    envelope = Envelope(kind, new_id(kind), int(time.time()), body.model)
    cache: Status | None = getattr(request.state, "cache", None)
    stream = observed(events, state.metrics, request.state.facts, cache)
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        raise UpstreamBadResponse("the model produced no output") from None
    if body.stream:
        writer = ChunkWriter(envelope, body.include_usage, body.options().provenance)
        ping = state.settings.sse_ping_seconds
        return SSEResponse(sse_stream(writer, choices, first, stream), ping)
    builder = ResponseBuilder(envelope)
    builder.add(first)
    if getattr(request.state, WATCHED, False):
        await consume(stream, builder)  # the caller cancels this if the client leaves
    elif not await until_disconnected(request.receive, finished(stream, builder)):
        return Response(status_code=CLIENT_CLOSED)  # nobody is left to read it
    return JSONResponse(builder.body())


async def consume(stream: EventStream, builder: ResponseBuilder) -> None:
    async with aclosing(stream):
        async for event in stream:
            builder.add(event)


async def finished(stream: EventStream, builder: ResponseBuilder) -> bool:
    await consume(stream, builder)
    return True
