"""`collab`: token-level collaborative decoding. The small model writes; before each token a
trigger reads its next-token distribution and may hand the next span to the large model.

Roles: `small` (a backend with token sessions: transformers, mlx, vllm) and `large` (the same,
or an `openai` backend whose server shares the small model's vocabulary: vLLM, another Tandem).
When the two tokenizers' fingerprints match, the models exchange token ids; otherwise text,
re-tokenised exactly at the seam (`gateway.policies.seam`). The loop itself is in
`gateway.policies.collab_loop`.

Parameters (catalog `params`, or per request in `extra_body={"tandem": {...}}` where the
alias's `overrides` allow it): `trigger`, `threshold`, `router` (the name of one of the
catalog's `routers`, for `learned`), `span` (large tokens per intervention, 1-32), `span_stop`
(end a span at punctuation or a newline), `draft` (tokens the small model drafts while the
large one works; 0: off), `deadline` (seconds per intervention before the small model's token
is used), `top_k`, `max_tokens`; and `breaker_failures`/`breaker_cooldown`, read once from the
catalog: the alias has one circuit breaker for its large backend, whatever a request says.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from pydantic import Field

from gateway.backends.base import Backend
from gateway.backends.openai_http import OpenAIBackend
from gateway.backends.openai_sessions import HTTPSessions
from gateway.backends.remote_tokenizer import load_tokenizer
from gateway.backends.sessions import TokenBackend
from gateway.backends.vocab_probe import vocabulary_mismatch
from gateway.core.errors import InvalidRequest, UnsupportedField, UpstreamError
from gateway.core.events import EventStream, Report, Usage
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest
from gateway.core.registry import UnknownName
from gateway.core.request import Sampling, refuse_unsupported, sampling_of
from gateway.core.tokens import (
    HFTokenizer,
    chat_prompt,
    encode_prompt,
    has_chat_template,
    turn_stops,
)
from gateway.core.window import check_window, check_window_early
from gateway.policies import ParamError, register
from gateway.policies.base import Policy, PolicyParams, RoleNeed, check_content_types
from gateway.policies.breaker import CircuitBreaker
from gateway.policies.collab_loop import Choice, Plan, Tally
from gateway.policies.triggers import Trigger, TriggerError, triggers

if TYPE_CHECKING:  # numpy: only catalogs with routers import it
    from gateway.policies.router_spec import Router

BY = "the 'collab' policy"
PROBE_SECONDS = 10.0  # a start-up check of a remote vocabulary waits no longer
log = logging.getLogger(__name__)
#: triggers kept per alias: a threshold is any float, so the cache must forget
TRIGGER_CACHE_SIZE = 64
TRIGGER_SETTINGS = ("threshold", "router", "upload_target")  # what belongs to one trigger
# two ways to say one thing: a request's threshold replaces the alias's upload target and back
ALTERNATIVES = {"threshold": "upload_target", "upload_target": "threshold"}
TriggerKey = tuple[str, float | None, str | None, float | None]


class CollabParams(PolicyParams):
    trigger: str = "entropy"
    threshold: float | None = None
    router: str | None = None
    upload_target: float | None = Field(
        default=None, ge=0, le=1, description="instead of a threshold: the router's calibrated one"
    )
    span: int = Field(default=1, ge=1, le=32)
    span_stop: bool = False
    draft: int = Field(default=4, ge=0, le=32)
    deadline: float = Field(default=10.0, gt=0, le=600)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_cooldown: float = Field(default=30.0, ge=0)
    top_k: int = Field(default=8, ge=2, le=64)
    max_tokens: int = Field(default=512, ge=1, description="when the request sets none")

    fixed = frozenset({"breaker_failures", "breaker_cooldown"})


def has_sessions(backend: Backend) -> bool:
    # not isinstance(TokenBackend): on 3.11 that reads properties, which raise before start
    return callable(getattr(type(backend), "open_session", None))


@register("collab")
class CollabPolicy(Policy):
    name = "collab"
    Params = CollabParams

    def __init__(
        self,
        alias: str,
        backends: Mapping[str, Backend],
        routers: Mapping[str, Router] | None = None,
    ) -> None:
        super().__init__(alias, backends, routers)
        self._triggers: OrderedDict[TriggerKey, Trigger] = OrderedDict()
        self._breaker: CircuitBreaker | None = None
        self._started = False  # the models are loaded: triggers are checked against them
        self._large_tokenizer: HFTokenizer | None = None  # an HTTP large model's own, if named
        self._http: HTTPSessions | None = None

    def request_base(self, base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
        """A request that picks another trigger starts from that trigger's defaults: the alias's
        threshold, router and upload target are its own trigger's (an entropy threshold means
        nothing to `top1`, a router nothing to `entropy`). A request's threshold replaces the
        alias's upload target, and the other way round."""
        own = base.get("trigger", CollabParams.model_fields["trigger"].default)
        if "trigger" in overrides and overrides["trigger"] != own:
            return {k: v for k, v in base.items() if k not in TRIGGER_SETTINGS}
        dropped = {ALTERNATIVES[k] for k in overrides if k in ALTERNATIVES}
        return {k: v for k, v in base.items() if k not in dropped}

    def check_params(self, params: PolicyParams) -> None:
        p = cast(CollabParams, params)
        small = self.backend("small", "backends")
        if not has_sessions(small):
            raise ParamError("backends", f"the small backend '{small.name}' has no token sessions")
        large = self.backend("large", "backends")
        if not (has_sessions(large) or isinstance(large, OpenAIBackend)):
            raise ParamError("backends", f"the large backend '{large.name}' has no token sessions")
        self.trigger(p)
        if self._breaker is None:  # the first parameters checked are the catalog's
            self._breaker = CircuitBreaker(p.breaker_failures, p.breaker_cooldown)

    def trigger(self, p: CollabParams) -> Trigger:
        key = (p.trigger, p.threshold, p.router, p.upload_target)
        found = self._triggers.get(key)
        if found is not None:
            self._triggers.move_to_end(key)
            return found
        try:
            built = triggers.get(p.trigger).build(p.threshold, self._router(p.router))
        except UnknownName as exc:
            raise ParamError("trigger", str(exc)) from None
        except TriggerError as exc:
            raise ParamError("router" if p.router else "trigger", str(exc)) from None
        if p.upload_target is not None:
            aim(built, p.threshold, p.upload_target)
        if self._started:
            self._fits(built)
        self._triggers[key] = built
        if len(self._triggers) > TRIGGER_CACHE_SIZE:
            self._triggers.popitem(last=False)
        return built

    def checks_started(self, params: PolicyParams) -> bool:
        return cast(CollabParams, params).trigger == "learned"

    async def check_started(self, params: PolicyParams) -> None:
        self._started = True
        self._triggers.clear()  # built before the models were loaded: unchecked
        large = self.backends["large"]
        if not has_sessions(large) and isinstance(large, OpenAIBackend):
            await self._same_vocabulary(large)
        self.trigger(cast(CollabParams, params))

    async def _same_vocabulary(self, large: OpenAIBackend) -> None:
        """An HTTP large model reads token ids in the vocabulary the gateway gives it (the small
        model's, or the tokenizer its entry names): verified, not assumed. One that cannot be
        asked now degrades requests, as a failing large model does."""
        small = cast(TokenBackend, self.backends["small"])
        source = large.settings.tokenizer
        if source is not None:
            self._large_tokenizer = await asyncio.to_thread(load_tokenizer, source)
            self._http = None
        tokenizer = self._large_tokenizer or small.tokenizer
        try:
            mismatch = await asyncio.wait_for(vocabulary_mismatch(large, tokenizer), PROBE_SECONDS)
        except (UpstreamError, TimeoutError) as exc:
            log.warning(
                "collab alias '%s': the large backend '%s' could not be asked for its "
                "vocabulary at start (%s); assuming the small model's",
                self.alias,
                large.name,
                getattr(exc, "message", type(exc).__name__),
            )
            return
        if mismatch is not None:
            hint = (
                f"the tokenizer '{source}' is not the served model's"
                if source
                else f"name the served model's tokenizer as backend '{large.name}''s `tokenizer`"
            )
            raise ParamError("backends", f"{mismatch}; {hint}")

    def _fits(self, trigger: Trigger) -> None:
        """A learned router reads this pair's small model: the pair it was trained for, and a
        hidden state the small model gives, of the size it was trained on."""
        router = getattr(trigger, "router", None)
        if router is None:
            return
        small, large = self.pair()
        try:
            router.check_pair(small.fingerprint, large.fingerprint)
            router.check_hidden(getattr(self.backends["small"], "hidden_size", None))
        except TriggerError as exc:
            raise ParamError("router", str(exc)) from None

    def _router(self, name: str | None) -> Router | None:
        """The catalog's router of that name: a parameter never names a file itself."""
        if name is None:
            return None
        router = self.routers.get(name)
        if router is None:
            known = ", ".join(sorted(self.routers)) or "none"
            raise ParamError("router", f"no router of that name in the catalog (known: {known})")
        return router

    def breaker(self) -> CircuitBreaker:
        if self._breaker is None:  # parameters built without `parse_params`: the defaults
            p = CollabParams()
            self._breaker = CircuitBreaker(p.breaker_failures, p.breaker_cooldown)
        return self._breaker

    def role_needs(self, params: PolicyParams) -> dict[str, RoleNeed]:
        # the small model writes every token the large one cannot (degraded, not failed)
        return {"small": "essential", "large": "optional"}

    def pair(self) -> tuple[TokenBackend, TokenBackend]:
        """The two models as token backends. An HTTP large model reads the small model's
        vocabulary, or the tokenizer its catalog entry names (text then crosses the seam)."""
        small = cast(TokenBackend, self.backends["small"])
        large = self.backends["large"]
        if has_sessions(large):
            return small, cast(TokenBackend, large)
        if self._http is None:
            tokenizer = self._large_tokenizer or small.tokenizer
            self._http = HTTPSessions(cast(OpenAIBackend, large), tokenizer)
        return small, self._http

    def chat(self, request: ChatCompletionRequest, params: CollabParams) -> EventStream:
        for name in ("tools", "response_format", "logprobs"):
            if getattr(request, name):
                raise UnsupportedField(name, BY)
        refuse_unsupported(request, BY)
        limit = request.max_output_tokens or params.max_tokens
        texts = [m.text() for m in request.messages]
        for role in ("small", "large"):
            model = self.backends[role]
            check_content_types(request, model)
            # before tokenising: a million characters take the loop 1-2 s per tokenizer
            check_window_early(model.context_window, texts, model.max_token_chars, limit)
        prompts, stops = [], request.stop_sequences()
        for role, backend in zip(("small", "large"), self.pair(), strict=True):
            # each model reads the conversation its own way; whoever writes, a reply ends
            # where either model's rendering would start the next turn
            plain = self.backends[role].plain_chat
            text = chat_prompt(backend.tokenizer, request.messages, plain)
            own = has_chat_template(backend.tokenizer)
            prompts.append(encode_prompt(backend.tokenizer, text, templated=own))
            stops += [s for s in turn_stops(backend.tokenizer, plain) if s not in stops]
        self.check_windows(prompts[0], prompts[1], limit)
        plan = self.plan(params, prompts[0], prompts[1], stops, limit)
        return self._run([plan], request.n, sampling_of(request))

    def complete(self, request: CompletionRequest, params: CollabParams) -> EventStream:
        refuse_unsupported(request, BY)
        for name in ("echo", "logprobs", "suffix", "best_of", "prompt_logprobs", "min_tokens"):
            if getattr(request, name):
                raise UnsupportedField(name, BY)
        small, large = self.pair()
        limit = params.max_tokens if request.max_tokens is None else request.max_tokens
        plans: list[Plan] = []
        for prompt in request.prompts():
            if not isinstance(prompt, str):
                raise InvalidRequest(f"{BY} takes text prompts, not token ids", param="prompt")
            for model in (self.backends["small"], self.backends["large"]):
                window, chars = model.context_window, model.max_token_chars
                check_window_early(window, [prompt], chars, limit, len(plans))
            ids = [small.tokenizer.encode(prompt), large.tokenizer.encode(prompt)]
            self.check_windows(ids[0], ids[1], limit, len(plans))
            plans.append(self.plan(params, ids[0], ids[1], request.stop_sequences(), limit))
        return self._run(plans, request.n, sampling_of(request, request.top_k))

    def check_windows(
        self, small_ids: list[int], large_ids: list[int], limit: int, index: int = 0
    ) -> None:
        """Both models read the prompt and then every token of the answer, whoever wrote it."""
        check_window(self.backends["small"].context_window, len(small_ids), limit, index)
        check_window(self.backends["large"].context_window, len(large_ids), limit, index)

    def plan(
        self, p: CollabParams, small_ids: list[int], large_ids: list[int], stops: list[str], n: int
    ) -> Plan:
        small, large = self.pair()
        same = small.fingerprint == large.fingerprint
        small_eos: frozenset[int] = getattr(small, "eos_ids", frozenset())
        return Plan(
            small=small,
            large=large,
            same_vocab=same,
            small_prompt=small_ids,
            large_prompt=small_ids if same else large_ids,
            small_eos=small_eos,
            large_eos=getattr(large, "eos_ids", small_eos),
            stops=stops,
            max_tokens=n,
            trigger=self.trigger(p),
            breaker=self.breaker(),
            span=p.span,
            span_stop=p.span_stop,
            draft=p.draft,
            deadline=p.deadline,
            top_k=p.top_k,
        )

    async def _run(self, plans: list[Plan], n: int, sampling: Sampling) -> EventStream:
        tallies: list[Tally] = []
        for plan in plans:
            for j in range(n):
                seed = None if sampling.seed is None else sampling.seed + j
                choice = Choice(plan, len(tallies), replace(sampling, seed=seed))
                async for event in choice.events():
                    yield event
                tallies.append(choice.tally)
        prompt = sum(len(plan.small_prompt) for plan in plans) * n
        yield Usage(prompt, sum(t.small + t.large for t in tallies))
        yield report(plans[0], tallies)


def report(plan: Plan, tallies: list[Tally]) -> Report:
    small = sum(t.small for t in tallies)
    large = sum(t.large for t in tallies)
    tokens = small + large
    overhead = sum(t.wall_seconds - t.model_seconds for t in tallies)
    extra: dict[str, Any] = {
        "tokens_small": small,
        "tokens_large": large,
        "trigger": type(plan.trigger).name,
        "threshold": plan.trigger.threshold,
        "span": plan.span,
        "vocabulary": "shared" if plan.same_vocab else "text",
        "drafted": sum(t.drafted for t in tallies),
        "draft_kept": sum(t.draft_kept for t in tallies),
        "large_failures": sum(t.failures for t in tallies),
        "breaker_skips": sum(t.skipped for t in tallies),
        "overhead_ms_per_token": round(1000 * overhead / tokens, 4) if tokens else 0.0,
    }
    return Report(
        "collab",
        tokens={"small": small, "large": large},
        interventions=sum(t.interventions for t in tallies),
        degraded=any(t.degraded for t in tallies),
        extra=extra,
        large_call_seconds=[s for t in tallies for s in t.large_seconds],
    )


def aim(trigger: Trigger, threshold: float | None, upload: float) -> None:
    """Set a learned trigger's threshold to the one its router's calibration gives `upload`."""
    router = getattr(trigger, "router", None)
    if router is None:
        raise ParamError("upload_target", "only the 'learned' trigger takes an upload target")
    if threshold is not None:
        raise ParamError("upload_target", "set a threshold or an upload target, not both")
    try:
        trigger.threshold = router.threshold_for(upload)
    except TriggerError as exc:
        raise ParamError("upload_target", str(exc)) from None
