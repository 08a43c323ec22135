"""The two phases of one `hawkeye` request, as events: the plan (from the cache or the
planner, shown as reasoning), then the answer (the expander's, or a fallback's when the
planner gave no plan), then usage and the report.

A planner fault (an upstream error, a refusal, or no plan by `timeout`) never fails the
request: with no plan at all the fallback answers; with part of a plan the expander uses that
part. Either way the report says `degraded`.

The plan is reasoning, as OpenAI's reasoning models count it: a client's `max_tokens` (or
`max_completion_tokens`) bounds plan and answer together. The plan is written first, under the
smaller of that budget and `plan_max_tokens`; each answer gets what the plan left. A plan that
used the whole budget leaves no answer: each choice finishes with `length` and no content.
Usage counts the plan once per choice, shown or not, and reports it as
`completion_tokens_details.reasoning_tokens`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Literal

from gateway.backends.base import Backend
from gateway.core.errors import TandemError
from gateway.core.events import Delta, EventStream, Finish, Report, Source, Usage
from gateway.core.protocol import ChatCompletionRequest
from gateway.policies.hawkeye_prompts import ThinkStripper
from gateway.policies.plan_cache import CachedPlan, PlanCache


@dataclass
class Job:
    request: ChatCompletionRequest
    planner: Backend
    expander: Backend
    plan_request: ChatCompletionRequest
    expand: Callable[[str], ChatCompletionRequest]
    show_plan: bool
    timeout: float
    fallback: Literal["expander", "planner"]
    cache: PlanCache | None
    read_cache: bool
    store_plan: bool
    budget: int | None = None  # plan and answer together, per choice; None: no bound


@dataclass
class Tally:
    plan: list[str] = field(default_factory=list)
    plan_tokens: int = 0
    plan_prompt_tokens: int = 0
    plan_cached: bool = False
    plan_truncated: bool = False
    plan_error: str | None = None
    planner_seconds: list[float] = field(default_factory=list)
    answer_source: Source = "small"
    answer_tokens: int = 0
    answer_prompt_tokens: int = 0
    fallback: str | None = None

    @property
    def plan_text(self) -> str:
        return "".join(self.plan)


async def run(job: Job) -> EventStream:
    tally = Tally()
    async for event in plan_phase(job, tally):
        yield event
    left = None if job.budget is None else job.budget - tally.plan_tokens
    if left is not None and left <= 0:
        answer = spent(job)
    elif tally.plan_text.strip():
        request = within(job.expand(tally.plan_text), left)
        answer = relay(job.expander.chat(request), "small", tally)
    else:
        tally.plan_error = tally.plan_error or "empty_plan"
        answer = fallback(job, tally, left)
    async for event in answer:
        yield event
    yield usage(job, tally)
    yield report(job, tally)


async def spent(job: Job) -> EventStream:
    """The plan used the whole budget: every choice ends there."""
    for index in range(job.request.n):
        yield Finish(index, "length")


def within(request: ChatCompletionRequest, tokens: int | None) -> ChatCompletionRequest:
    """`request` with its output bounded by `tokens` (what the plan left of the budget)."""
    if tokens is None:
        return request
    update: dict[str, Any] = {"max_tokens": tokens}
    if "max_completion_tokens" in request.model_fields_set:
        update["max_completion_tokens"] = tokens
    return request.model_copy(update=update)


async def plan_phase(job: Job, tally: Tally) -> EventStream:
    cached = await job.cache.get() if job.cache and job.read_cache else None
    if cached is not None:
        tally.plan, tally.plan_tokens, tally.plan_cached = [cached.text], cached.tokens, True
        for event in shown(job, cached.text):
            yield event
        return
    started = perf_counter()
    try:
        async for piece in planned(job, tally):
            tally.plan.append(piece)
            for event in shown(job, piece):
                yield event
    except (TandemError, TimeoutError) as exc:
        tally.plan_error = getattr(exc, "code", None) or "plan_timeout"
        tally.plan_tokens = max(tally.plan_tokens, len(tally.plan))
    finally:
        tally.planner_seconds.append(perf_counter() - started)
    if job.cache and job.store_plan and tally.plan_error is None and tally.plan_text.strip():
        await job.cache.put(CachedPlan(tally.plan_text, tally.plan_tokens))


def shown(job: Job, piece: str) -> list[Delta]:
    """A piece of the plan as reasoning, once per choice (each choice's message carries it)."""
    if not job.show_plan or not piece:
        return []
    return [Delta(i, "", "plan", reasoning=piece) for i in range(job.request.n)]


async def planned(job: Job, tally: Tally) -> AsyncIterator[str]:
    """The plan's text as the planner writes it, reasoning and content alike, think tags
    removed; `TimeoutError` when the deadline passes first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + job.timeout
    stripper = ThinkStripper()
    events = job.planner.chat(job.plan_request)
    async with aclosing(events):
        while True:
            try:
                event = await asyncio.wait_for(anext(events), max(0.0, deadline - loop.time()))
            except StopAsyncIteration:
                break
            if isinstance(event, Delta):
                for part in (event.reasoning, event.text):
                    if part and (visible := stripper.feed(part)):
                        yield visible
            elif isinstance(event, Usage):
                tally.plan_tokens = event.completion_tokens
                tally.plan_prompt_tokens = event.prompt_tokens
            elif isinstance(event, Finish):
                tally.plan_truncated = event.reason == "length"
    if rest := stripper.flush():
        yield rest


async def fallback(job: Job, tally: Tally, left: int | None) -> EventStream:
    """No plan: the planner answers the request itself, or (configured so, or when it fails
    again before answering) the expander answers it without a plan."""
    request = within(direct(job.request), left)
    if job.fallback == "planner":
        try:
            events = relay(job.planner.chat(request), "large", tally)
            first = await anext(events)
        except (TandemError, StopAsyncIteration):
            pass  # it failed again before answering: the expander is the last resort
        else:
            tally.fallback = "planner"
            yield first
            async for event in events:
                yield event
            return
    tally.fallback = "expander"
    async for event in relay(job.expander.chat(request), "small", tally):
        yield event


def direct(request: ChatCompletionRequest) -> ChatCompletionRequest:
    return request.model_copy(update={"tandem": None, "stream": True})


async def relay(events: EventStream, source: Source, tally: Tally) -> EventStream:
    """An answering model's deltas and finishes, tagged; its usage goes to the tally."""
    tally.answer_source = source
    started = perf_counter()
    async with aclosing(events):
        async for event in events:
            if isinstance(event, Delta):
                event.source = source
                yield event
            elif isinstance(event, Finish):
                yield event
            elif isinstance(event, Usage):
                tally.answer_tokens = event.completion_tokens
                tally.answer_prompt_tokens = event.prompt_tokens
    if source == "large":
        tally.planner_seconds.append(perf_counter() - started)


def usage(job: Job, tally: Tally) -> Usage:
    """The plan once per choice, as reasoning (each choice's budget paid for it, shown or
    not), then the answers."""
    plan = tally.plan_tokens * job.request.n if tally.plan else 0
    return Usage(
        tally.plan_prompt_tokens + tally.answer_prompt_tokens,
        plan + tally.answer_tokens,
        {"completion_tokens_details": {"reasoning_tokens": plan}},
    )


def report(job: Job, tally: Tally) -> Report:
    generated_plan = 0 if tally.plan_cached else tally.plan_tokens
    tokens: dict[str, int] = {"plan": generated_plan, tally.answer_source: tally.answer_tokens}
    large = generated_plan + (tally.answer_tokens if tally.answer_source == "large" else 0)
    generated = generated_plan + tally.answer_tokens
    extra: dict[str, Any] = {
        "plan_tokens": tally.plan_tokens,
        "answer_tokens": tally.answer_tokens,
        "plan_cached": tally.plan_cached,
        "plan_shown": job.show_plan and bool(tally.plan),
        "plan_truncated": tally.plan_truncated,
        "plan_error": tally.plan_error,
        "fallback": tally.fallback,
        "planner": job.planner.name,
        "expander": job.expander.name,
        # the share of generated tokens that the large model wrote (the plan is its work)
        "upload_ratio": round(large / generated, 4) if generated else 0.0,
    }
    return Report(
        "hawkeye",
        tokens=tokens,
        degraded=tally.plan_error is not None,
        extra=extra,
        large_call_seconds=list(tally.planner_seconds),
    )
