"""`hawkeye`: plan, then expand (HAWKEYE, arXiv 2504.00424). The planner (the large model)
writes a concise chain of thought for the whole conversation under a token budget; the
expander (the small model) writes the answer from the conversation and that plan.

Roles: `planner` and `expander`, any backends (an OpenAI-compatible server such as vLLM, or a
model in this process): both are used through their streamed `chat()`. The plan streams to the
client as `reasoning_content` when shown (`show_plan`), then the answer as `content`. Plans
are cached in the app's store; a planner that fails or misses its deadline degrades the
answer instead of failing it (`fallback`). The phases run in `gateway.policies.hawkeye_run`.

Parameters (catalog `params`, or per request in `extra_body={"tandem": {...}}`):
`plan_max_tokens`, `plan_temperature` (default: the request's), `plan_prompt`,
`expand_prompt`, `show_plan`, `plan_timeout_seconds`, `fallback` (`expander`: answer without a
plan; `planner`: the planner answers alone), `plan_cache`, `plan_cache_ttl`,
`plan_cache_scope` (`key` or `global`). A request may set only those the alias's catalog
entry lists under `overrides` (gateway/core/overrides.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from gateway.backends.base import Backend
from gateway.core.errors import InvalidRequest, UnsupportedField, UpstreamError
from gateway.core.events import EventStream
from gateway.core.protocol import (
    MAX_CACHE_TTL_SECONDS,
    CacheControl,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
)
from gateway.policies import register, services
from gateway.policies.base import Policy, PolicyParams, RoleNeed, check_content_types
from gateway.policies.hawkeye_prompts import (
    EXPAND_TEMPLATE,
    PLAN_TEMPLATE,
    conversation_text,
    fill,
)
from gateway.policies.hawkeye_run import Job, direct, run
from gateway.policies.plan_cache import PlanCache, plan_key, scope_of
from gateway.stores.cache import MemoryStore

if TYPE_CHECKING:  # numpy: only catalogs with routers import it
    from gateway.policies.router_spec import Router

BY = "the 'hawkeye' policy"
#: the plan and the answer are text; a tool call has no place in either
REFUSED = ("tools", "tool_choice")


class HawkeyeParams(PolicyParams):
    plan_max_tokens: int = Field(default=256, ge=1, le=32768)
    plan_temperature: float | None = Field(default=None, ge=0, le=2)
    plan_prompt: str = PLAN_TEMPLATE
    expand_prompt: str = EXPAND_TEMPLATE
    show_plan: bool = True
    plan_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    fallback: Literal["expander", "planner"] = "expander"
    plan_cache: bool = True
    plan_cache_ttl: float = Field(default=3600.0, gt=0, le=MAX_CACHE_TTL_SECONDS)
    plan_cache_scope: Literal["key", "global"] = "key"

    @field_validator("plan_prompt")
    @classmethod
    def _plan_prompt_has_conversation(cls, value: str) -> str:
        return _needs(value, "{conversation}")

    @field_validator("expand_prompt")
    @classmethod
    def _expand_prompt_has_both(cls, value: str) -> str:
        return _needs(_needs(value, "{conversation}"), "{plan}")


def _needs(template: str, placeholder: str) -> str:
    if placeholder not in template:
        raise ValueError(f"the template must contain {placeholder}")
    return template


def plan_budget(request: ChatCompletionRequest, p: HawkeyeParams) -> int:
    """The plan's tokens: `plan_max_tokens`, within the client's budget for plan and answer."""
    budget = request.max_output_tokens
    return p.plan_max_tokens if budget is None else min(p.plan_max_tokens, budget)


def planner_request(request: ChatCompletionRequest, p: HawkeyeParams) -> ChatCompletionRequest:
    """One user turn asking for the plan of the whole conversation, under the plan budget.
    Only fields that are set go in, so an HTTP planner is sent nothing it was not asked."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": "user", "content": fill(p.plan_prompt, _conversation(request))}],
        "max_tokens": plan_budget(request, p),
        "stream": True,
    }
    temperature = request.temperature if p.plan_temperature is None else p.plan_temperature
    if temperature is not None:
        body["temperature"] = temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.seed is not None:
        body["seed"] = request.seed
    return ChatCompletionRequest.model_validate(body)


def expander_request(
    request: ChatCompletionRequest, p: HawkeyeParams, plan: str
) -> ChatCompletionRequest:
    """The client's request (max_tokens, stop, temperature, seed, n, ...) with the
    conversation and the plan as one user turn."""
    text = fill(p.expand_prompt, _conversation(request), plan)
    messages = [ChatMessage(role="user", content=text)]
    return request.model_copy(update={"messages": messages, "tandem": None, "stream": True})


def plan_budget_of(plan: ChatCompletionRequest) -> int:
    return plan.max_output_tokens or 0


def _conversation(request: ChatCompletionRequest) -> str:
    return conversation_text(request.messages)


@register("hawkeye")
class HawkeyePolicy(Policy):
    name = "hawkeye"
    Params = HawkeyeParams

    def __init__(
        self,
        alias: str,
        backends: Mapping[str, Backend],
        routers: Mapping[str, Router] | None = None,
    ) -> None:
        super().__init__(alias, backends, routers)
        # plans of requests served outside the app (a benchmark driving the policy directly)
        self._own_store = MemoryStore()

    def check_params(self, params: PolicyParams) -> None:
        self.backend("planner", "backends")
        self.backend("expander", "backends")

    def role_needs(self, params: PolicyParams) -> dict[str, RoleNeed]:
        # without a planner the expander answers alone (degraded); without an expander, nothing
        return {"expander": "essential", "planner": "optional"}

    def chat(self, request: ChatCompletionRequest, params: HawkeyeParams) -> EventStream:
        for name in REFUSED:
            if getattr(request, name):
                raise UnsupportedField(name, BY, "the plan and the answer are text")
        planner, expander = self.backends["planner"], self.backends["expander"]
        check_content_types(request, planner)
        check_content_types(request, expander)
        # Built and dropped unstarted: each model refuses what it cannot honour now (a field,
        # a prompt over its context window), as a 400 before any work starts, rather than
        # mid-stream after the plan was shown. The expander may also answer the request as it
        # is, when there is no plan (`fallback`).
        expander.chat(expander_request(request, params, ""))
        expander.chat(direct(request))
        plan = planner_request(request, params)
        with suppress(UpstreamError):  # a planner that is down degrades the answer, as in run
            planner.chat(plan)
        control = request.options().cache or CacheControl()
        job = Job(
            request=request,
            planner=planner,
            expander=expander,
            plan_request=plan,
            expand=lambda plan: expander_request(request, params, plan),
            show_plan=params.show_plan,
            timeout=params.plan_timeout_seconds,
            fallback=params.fallback,
            cache=self._plan_cache(request, plan, params) if params.plan_cache else None,
            read_cache=control.read,
            store_plan=control.store,
            budget=request.max_output_tokens,
        )
        return run(job)

    def complete(self, request: CompletionRequest, params: HawkeyeParams) -> EventStream:
        raise InvalidRequest(
            f"{BY} serves chat completions only: the plan streams as reasoning_content, which "
            "legacy completions cannot carry; use /v1/chat/completions",
            param="model",
            code="unsupported_endpoint",
        )

    def _plan_cache(
        self, request: ChatCompletionRequest, plan: ChatCompletionRequest, params: HawkeyeParams
    ) -> PlanCache:
        lent = services.current()
        key = plan_key(
            self.backends["planner"].model_id,
            request.messages,
            params.plan_prompt,
            plan_budget_of(plan),
            scope_of(params.plan_cache_scope, lent.key_id if lent else None),
            sampling=(plan.temperature, plan.top_p, plan.seed),
        )
        if lent is None:
            return PlanCache(self._own_store, None, key, params.plan_cache_ttl)
        return PlanCache(lent.store, lent.metrics, key, params.plan_cache_ttl)
