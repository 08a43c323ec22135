"""Token sessions over HTTP, on any server that speaks `/v1/completions` with vLLM's extensions
(vLLM, another Tandem): the remote keeps the KV cache through its prefix cache, so every call
re-sends the whole sequence as token ids and pays only for the new tokens.

```
HTTPSessions(openai_backend, tokenizer)   same vocabulary: token-id sessions
    open_session(ids) -> HTTPTokenSession
complete_text(openai_backend, text, ...)   other vocabulary: text in, text and log-probs out
```

Every call of one session carries the same routing key (the backend's `session_header`, by
default `x-session-id`, beside `x-request-id`): a sticky router in front of replicas sends the
whole session to one of them, where its prefix is cached; a backend that lists replicas itself
(`base_urls`) picks one by the same key. Each call asks for
`return_tokens_as_token_ids`, so tokens come back as `token_id:N` and are
never re-tokenised. Over HTTP the entropy of a distribution is a lower bound computed from the
top-k (the rest of the probability mass counted as one outcome).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.backends.openai_http import OpenAIBackend, encode_payload
from gateway.backends.openai_wire import (
    MAX_ERROR_BODY,
    translate_status,
    translate_transport_error,
)
from gateway.backends.sessions import (
    GREEDY,
    Distribution,
    SessionClosed,
    Span,
    Stop,
    TokenChoice,
    TokenSession,
)
from gateway.core.errors import UpstreamBadResponse
from gateway.core.request import Sampling
from gateway.core.tokens import HFTokenizer, fingerprint
from gateway.observability.tracing import upstream_call

TOKEN_ID = "token_id:"


def parse_token(backend: str, token: str) -> int:
    if not token.startswith(TOKEN_ID):
        raise UpstreamBadResponse(
            f"backend '{backend}' did not return token ids (needs return_tokens_as_token_ids)"
        )
    return int(token[len(TOKEN_ID) :])


def entropy_lower_bound(logprobs: Sequence[float]) -> float:
    """The entropy of a distribution known by its top-k log-probs only: a lower bound, as
    tight as the top-k allow. No token of the unseen rest is likelier than the rest's mass or
    than the least of the top-k, so each of its nats is at least -log of the smaller: on real
    text (SmolLM2, 529 positions, docs/collaboration.md) this halves the gap to the exact
    entropy against counting the rest as one token."""
    probs = [math.exp(lp) for lp in logprobs]
    rest = max(0.0, 1.0 - sum(probs))
    seen = -sum(p * math.log(p) for p in probs if p > 0)
    if rest <= 0.0:
        return seen
    ceiling = min([rest, *probs])
    return seen - rest * math.log(ceiling) if ceiling > 0 else seen


def top_k_distribution(ranked: Sequence[tuple[int, float]], k: int) -> Distribution:
    """The first `k` of a ranking, with the entropy bound that all of it allows: a backend
    that sees only top log-probs asks for more than `k` so that an entropy threshold means
    nearly what it means where the whole vocabulary is seen."""
    top = ranked[:k]
    entropy = entropy_lower_bound([lp for _, lp in ranked])
    return Distribution([i for i, _ in top], [lp for _, lp in top], entropy)


def sampling_fields(sampling: Sampling) -> dict[str, Any]:
    fields: dict[str, Any] = {"temperature": sampling.temperature, "top_p": sampling.top_p}
    if sampling.top_k:
        fields["top_k"] = sampling.top_k
    if sampling.seed is not None:
        fields["seed"] = sampling.seed
    return fields


@dataclass
class Completion:
    """One parsed `/v1/completions` choice in token-id form."""

    tokens: list[TokenChoice]
    finish: str
    text: str


class Remote:
    """POSTs to `/v1/completions` through the backend's client; errors become Tandem's. A
    token session's calls share its routing `key` (`OpenAIBackend.call_headers`)."""

    def __init__(self, backend: OpenAIBackend, key: str | None = None) -> None:
        self.backend = backend
        self.key = key

    async def complete(self, payload: dict[str, Any]) -> Completion:
        body = {"model": self.backend.settings.model, "return_tokens_as_token_ids": True}
        body.update(payload)
        name = self.backend.name
        headers = self.backend.call_headers(self.key)
        model = self.backend.settings.model
        try:
            with upstream_call(headers, "text_completion", model, self.backend.server):
                async with self.backend.post(
                    "completions",
                    encode_payload(body),
                    headers,
                    self.key,
                    self.backend.call_timeout,
                ) as response:
                    if response.status >= 400:
                        raise translate_status(
                            name, response, await response.content.read(MAX_ERROR_BODY)
                        )
                    raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise translate_transport_error(name, exc) from None
        try:
            choice = json.loads(raw)["choices"][0]
            return Completion(
                parse_logprobs(name, choice.get("logprobs")),
                choice.get("finish_reason") or "length",
                choice.get("text") or "",
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise UpstreamBadResponse(f"backend '{name}' sent a malformed completion") from None


def parse_logprobs(backend: str, wire: dict[str, Any] | None) -> list[TokenChoice]:
    if not wire:
        return []
    tops = wire.get("top_logprobs") or [None] * len(wire["tokens"])
    out = []
    for token, logprob, top in zip(wire["tokens"], wire["token_logprobs"], tops, strict=True):
        alternatives = sorted(
            ((parse_token(backend, t), float(lp)) for t, lp in (top or {}).items()),
            key=lambda pair: -pair[1],
        )
        value = float("nan") if logprob is None else float(logprob)
        out.append(TokenChoice(parse_token(backend, token), value, alternatives))
    return out


class HTTPTokenSession(TokenSession):
    """A sequence kept on this side; each query sends it whole (the server caches prefixes)."""

    def __init__(self, remote: Remote, prompt_ids: Sequence[int]) -> None:
        super().__init__(prompt_ids)
        self.remote = remote

    def _check(self) -> None:
        if self.closed:
            raise SessionClosed("the token session is closed")

    async def next_distribution(self, k: int) -> Distribution:
        self._check()
        wide = max(k, self.remote.backend.settings.entropy_logprobs)
        done = await self.remote.complete(
            {"prompt": self.ids, "max_tokens": 1, "logprobs": wide, "temperature": 0}
        )
        return top_k_distribution(done.tokens[0].top if done.tokens else [], k)

    async def score(self, ids: Sequence[int], k: int = 0) -> list[TokenChoice]:
        self._check()
        sequence = [*self.ids, *ids]
        done = await self.remote.complete(
            {"prompt": sequence, "max_tokens": 1, "echo": True, "logprobs": k, "temperature": 0}
        )
        scored = done.tokens[len(self.ids) : len(sequence)]
        if [t.id for t in scored] != list(ids):
            raise UpstreamBadResponse(f"backend '{self.remote.backend.name}' echoed other tokens")
        self.ids.extend(ids)
        return [TokenChoice(t.id, t.logprob, t.top[:k]) for t in scored]

    async def append(self, ids: Sequence[int]) -> None:
        self._check()
        self.ids.extend(ids)

    async def step(self, sampling: Sampling = GREEDY, k: int = 0) -> TokenChoice:
        span = await self.generate(1, None, sampling, k)
        return span.tokens[0]

    async def generate(
        self,
        max_tokens: int,
        stop: Stop | None = None,
        sampling: Sampling = GREEDY,
        k: int = 0,
        decode: Callable[[list[int]], str] | None = None,
    ) -> Span:
        """One request; the server applies stop strings and its own end-of-sequence ids."""
        self._check()
        stop = stop or Stop()
        payload: dict[str, Any] = {
            "prompt": self.ids,
            "max_tokens": max_tokens,
            "logprobs": k,
            **sampling_fields(sampling),
        }
        if stop.strings:
            payload["stop"] = list(stop.strings)
        if stop.ids:
            payload["stop_token_ids"] = sorted(stop.ids)
        done = await self.remote.complete(payload)
        tokens = [TokenChoice(t.id, t.logprob, t.top[:k]) for t in done.tokens]
        cut = next((n + 1 for n, t in enumerate(tokens) if t.id in stop.ids), None)
        if cut is not None:
            tokens = tokens[:cut]
        self.ids.extend(t.id for t in tokens)
        finished = cut is not None or done.finish == "stop"
        return Span(tokens, "stop" if finished else "length")

    async def close(self) -> None:
        self.closed = True  # nothing is held remotely beyond the server's own prefix cache


class HTTPSessions:
    """Token sessions on an `openai` backend whose vocabulary is `tokenizer`'s."""

    def __init__(self, backend: OpenAIBackend, tokenizer: HFTokenizer) -> None:
        self.backend = backend
        self._tokenizer = tokenizer
        self._fingerprint = fingerprint(tokenizer)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    async def open_session(
        self, prompt_ids: Sequence[int], *, hidden: bool = False
    ) -> TokenSession:
        # hidden states never cross HTTP; a caller that needs them gets none rather than an error
        return HTTPTokenSession(Remote(self.backend, uuid.uuid4().hex), prompt_ids)


async def complete_text(
    backend: OpenAIBackend,
    text: str,
    max_tokens: int,
    stop: Sequence[str] = (),
    sampling: Sampling = GREEDY,
    k: int = 0,
) -> tuple[str, list[TokenChoice], str]:
    """For a remote of another vocabulary: its text, its tokens (its ids) and finish reason."""
    payload: dict[str, Any] = {
        "prompt": text,
        "max_tokens": max_tokens,
        "logprobs": k,
        **sampling_fields(sampling),
    }
    if stop:
        payload["stop"] = list(stop)
    done = await Remote(backend).complete(payload)
    return done.text, done.tokens, done.finish
