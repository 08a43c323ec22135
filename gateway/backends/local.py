"""Chat and legacy completions for in-process runtimes, built on their token sessions.

A runtime backend (transformers, mlx) only loads a model and opens sessions; this module turns
a request into sessions and the sessions into events: prompts (text or token ids), `n`,
`max_tokens`, stop strings, sampling, `echo`, and log-probs in the OpenAI/vLLM wire shapes.
So `/v1/completions` answers with exactly the numbers a token session gives.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from pydantic import Field

from gateway.backends.base import Backend, BackendConfig
from gateway.backends.prefix_pool import PrefixPool
from gateway.backends.sessions import (
    SessionCore,
    ThreadedSession,
    TokenChoice,
    TokenSession,
    Worker,
)
from gateway.core.errors import InvalidRequest, UnsupportedField, UpstreamUnavailable
from gateway.core.events import Delta, Event, EventStream, Finish, Usage
from gateway.core.plain_chat import DEFAULT_PLAIN_CHAT, PLAIN_CHATS, PlainChatName
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest
from gateway.core.request import Sampling, refuse_unsupported, sampling_of
from gateway.core.tokens import (
    HFTokenizer,
    StopMatcher,
    StreamDetokenizer,
    chat_prompt,
    encode_prompt,
    fingerprint,
    has_chat_template,
    longest_token,
    turn_stops,
)
from gateway.core.window import check_window, check_window_early

WireShape = Literal["chat", "completion"]


class LocalBackendConfig(BackendConfig):
    model: str = Field(description="packaged name, .gguf file, model folder or hub id")
    max_memory_gb: float | None = Field(default=None, gt=0)
    default_max_tokens: int = Field(default=512, ge=1)
    prefix_cache: int = Field(
        default=4, ge=0, description="finished sessions' KV caches kept for reuse (0: none)"
    )
    plain_chat: PlainChatName = Field(
        default=DEFAULT_PLAIN_CHAT,
        description="how a conversation is written for a model without a chat template "
        "(a base model): transcript | dialogue | qa | instruct",
    )


@dataclass(frozen=True)
class Job:
    """One request, reduced to what generation needs."""

    prompts: list[list[int]]
    n: int
    max_tokens: int
    stops: list[str]
    stop_ids: frozenset[int]
    sampling: Sampling
    shape: WireShape
    logprobs: int | None  # top-k per token; None: no log-probs
    echo: bool = False
    ids_as_tokens: bool = False
    skip_special: bool = True


class Runtime(Protocol):
    """A loaded model: what the generic code needs to know about it."""

    tokenizer: Any
    eos_ids: frozenset[int]
    context_length: int
    vocab_size: int  # the tokenizer's, with added tokens (the model's may be padded larger)


class LocalBackend(Backend):
    """A model in this process. Subclasses load it (`load`, on the worker thread) and make one
    `SessionCore` per session (`new_core`); the rest is shared."""

    settings: LocalBackendConfig

    def __init__(self, name: str, config: LocalBackendConfig) -> None:
        super().__init__(name, config)
        self.settings = config
        self.plain_chat = PLAIN_CHATS[config.plain_chat]
        self._runtime: Runtime | None = None
        self.worker = Worker(name)
        self.prefix_pool: PrefixPool[SessionCore] = PrefixPool(config.prefix_cache)

    @abstractmethod
    def load(self) -> Runtime:
        """Prepare and load the model; runs on the worker thread."""

    @abstractmethod
    def new_core(self, runtime: Any, hidden: bool) -> SessionCore: ...

    @property
    def model_id(self) -> str:
        return f"{self.kind}:{self.settings.model}"

    async def start(self) -> None:
        self._runtime = await self.worker.run(self.load)
        # a scan of the whole vocabulary (0.3 s for Gemma-3's): once, off the event loop
        self._max_token_chars = await self.worker.run(lambda: longest_token(self.tokenizer))

    async def aclose(self) -> None:
        self._runtime = None
        self.prefix_pool.clear()
        self.worker.shutdown()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise UpstreamUnavailable(f"backend '{self.name}' is not started")
        return self._runtime

    async def health(self) -> None:
        self.runtime  # noqa: B018 - raises when not loaded

    @property
    def tokenizer(self) -> HFTokenizer:
        tokenizer: HFTokenizer = self.runtime.tokenizer
        return tokenizer

    @property
    def eos_ids(self) -> frozenset[int]:
        return self.runtime.eos_ids

    @property
    def context_length(self) -> int:
        return self.runtime.context_length

    @property
    def context_window(self) -> int | None:
        return self.runtime.context_length

    @property
    def hidden_size(self) -> int | None:
        """Values in the hidden state a session gives when asked; None: it gives none."""
        size = getattr(self.runtime, "hidden_size", None)
        return None if size is None else int(size)

    @property
    def max_token_chars(self) -> int | None:
        return getattr(self, "_max_token_chars", None)

    async def open_session(
        self, prompt_ids: Sequence[int], *, hidden: bool = False
    ) -> TokenSession:
        core = self.prefix_pool.take(prompt_ids, hidden)
        if core is None:
            core = self.new_core(self.runtime, hidden)
        return ThreadedSession(core, self.worker, prompt_ids, self.prefix_pool, hidden)

    @property
    def fingerprint(self) -> str:
        # hashing a 262k-token vocabulary takes a while: once per loaded tokenizer
        tokenizer = self.tokenizer
        cached = getattr(self, "_fingerprint", None)
        if cached is None or cached[0] is not tokenizer:
            cached = (tokenizer, fingerprint(tokenizer))
            self._fingerprint = cached
        return cached[1]

    def _by(self) -> str:
        return f"backend '{self.name}' ({self.kind})"

    def chat(self, request: ChatCompletionRequest) -> EventStream:
        for name in ("tools", "response_format"):
            if getattr(request, name):
                raise UnsupportedField(name, self._by())
        refuse_unsupported(request, self._by())
        max_tokens = request.max_output_tokens or self.settings.default_max_tokens
        texts = [m.text() for m in request.messages]
        check_window_early(self.context_length, texts, self.max_token_chars, max_tokens)
        text = chat_prompt(self.tokenizer, request.messages, self.plain_chat)
        ids = encode_prompt(self.tokenizer, text, templated=has_chat_template(self.tokenizer))
        stops = request.stop_sequences() + list(turn_stops(self.tokenizer, self.plain_chat))
        k = (request.top_logprobs or 0) if request.logprobs else None
        job = Job(
            prompts=[ids],
            n=request.n,
            max_tokens=max_tokens,
            stops=stops,
            stop_ids=self.eos_ids,
            sampling=sampling_of(request),
            shape="chat",
            logprobs=k,
        )
        self._check(job)
        return self._run(job)

    def complete(self, request: CompletionRequest) -> EventStream:
        by = self._by()
        refuse_unsupported(request, by)
        for name in ("suffix", "prompt_logprobs", "min_tokens", "include_stop_str_in_output"):
            if getattr(request, name):
                raise UnsupportedField(name, by)
        if request.best_of not in (None, request.n):
            raise UnsupportedField("best_of", by, "only best_of == n is served")
        max_tokens = (
            self.settings.default_max_tokens if request.max_tokens is None else request.max_tokens
        )
        for i, prompt in enumerate(request.prompts()):
            if isinstance(prompt, str):
                check_window_early(
                    self.context_length, [prompt], self.max_token_chars, max_tokens, i
                )
        prompts = [
            p if isinstance(p, list) else self.tokenizer.encode(p) for p in request.prompts()
        ]
        job = Job(
            prompts=prompts,
            n=request.n,
            max_tokens=max_tokens,
            stops=request.stop_sequences(),
            stop_ids=frozenset() if request.ignore_eos else self.eos_ids,
            sampling=sampling_of(request, request.top_k),
            shape="completion",
            logprobs=request.logprobs,
            echo=request.echo,
            ids_as_tokens=bool(request.return_tokens_as_token_ids),
            skip_special=request.skip_special_tokens is not False,
        )
        self._check(job)
        return self._run(job)

    def _check(self, job: Job) -> None:
        """Before any work starts: called when the request is made, not when it is run."""
        vocab = self.runtime.vocab_size
        for i, prompt in enumerate(job.prompts):
            if any(t >= vocab for t in prompt):
                raise InvalidRequest(f"prompt {i} holds a token id outside the vocabulary")
            check_window(self.context_length, len(prompt), job.max_tokens, i)

    async def _run(self, job: Job) -> EventStream:
        completion = 0
        index = 0
        for prompt in job.prompts:
            for j in range(job.n):
                seed = job.sampling.seed
                sampling = replace(job.sampling, seed=None if seed is None else seed + j)
                choice = ChoiceRun(self, job, index, sampling)
                async for event in choice.events(prompt):
                    yield event
                completion += choice.generated
                index += 1
        yield Usage(sum(len(p) for p in job.prompts), completion)


class ChoiceRun:
    """One choice: a session opened, stepped and always closed."""

    def __init__(self, backend: LocalBackend, job: Job, index: int, sampling: Sampling) -> None:
        self.backend = backend
        self.tokenizer = backend.tokenizer
        self.job = job
        self.index = index
        self.sampling = sampling
        self.generated = 0
        self.offset = 0  # characters of this choice's text sent so far

    async def events(self, prompt: list[int]) -> AsyncIterator[Event]:
        scoring = self.job.echo and self.job.logprobs is not None
        session = await self.backend.open_session(prompt[:1] if scoring else prompt)
        try:
            if self.job.echo:
                yield await self._echo(session, prompt, scoring)
            async for event in self._generate(session):
                yield event
        finally:
            await session.close()

    async def _echo(self, session: TokenSession, prompt: list[int], scoring: bool) -> Delta:
        text = self.tokenizer.decode(prompt, skip_special_tokens=self.job.skip_special)
        logprobs = None
        if scoring:
            k = self.job.logprobs or 0
            scored = await session.score(prompt[1:], k)
            first = TokenChoice(prompt[0], float("nan"))
            logprobs = self._wire([first, *scored], [self.tokenizer.decode([t]) for t in prompt])
            logprobs["token_logprobs"][0] = None
            if logprobs.get("top_logprobs"):
                logprobs["top_logprobs"][0] = None
        self.offset += len(text)
        return Delta(self.index, text, logprobs=logprobs)

    async def _generate(self, session: TokenSession) -> AsyncIterator[Event]:
        job = self.job
        detok = StreamDetokenizer(self.tokenizer, skip_special_tokens=job.skip_special)
        stopper = StopMatcher(job.stops)
        k = job.logprobs or 0
        reason = "length"
        while self.generated < job.max_tokens:
            choice = await session.step(self.sampling, k)
            self.generated += 1
            if choice.id in job.stop_ids:
                # like vLLM: the end-of-sequence token has no text but does have log-probs
                if job.logprobs is not None:
                    yield Delta(self.index, "", logprobs=self._wire([choice], [""]))
                reason = "stop"
                break
            text = stopper.feed(detok.add([choice.id]))
            logprobs = None if job.logprobs is None else self._wire([choice], [text])
            if text or logprobs:
                yield Delta(self.index, text, logprobs=logprobs)
                self.offset += len(text)
            if stopper.stopped:
                reason = "stop"
                break
        tail = "" if stopper.stopped else stopper.feed(detok.flush()) + stopper.flush()
        if tail:
            yield Delta(self.index, tail)
        yield Finish(self.index, reason)

    def _token(self, token_id: int) -> str:
        if self.job.ids_as_tokens:
            return f"token_id:{token_id}"
        return self.tokenizer.decode([token_id], skip_special_tokens=False)

    def _wire(self, choices: list[TokenChoice], texts: list[str]) -> dict[str, Any]:
        if self.job.shape == "chat":
            return {"content": [self._chat_entry(c) for c in choices]}
        offsets, at = [], self.offset
        for text in texts:
            offsets.append(at)
            at += len(text)
        return {
            "tokens": [self._token(c.id) for c in choices],
            "token_logprobs": [c.logprob for c in choices],
            "top_logprobs": [{self._token(i): lp for i, lp in c.top} for c in choices],
            "text_offset": offsets,
        }

    def _chat_entry(self, choice: TokenChoice) -> dict[str, Any]:
        def entry(token_id: int, logprob: float) -> dict[str, Any]:
            token = self._token(token_id)
            return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

        return {
            **entry(choice.id, choice.logprob),
            "top_logprobs": [entry(i, lp) for i, lp in choice.top],
        }
