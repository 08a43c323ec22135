"""`mlx`: a causal LM in this process on mlx-lm (Apple silicon; `mlx[cpu]` on Linux).

The only module that imports mlx. It loads the same prepared folders as `transformers`; each
token session owns an mlx-lm prompt cache, so a step reads one new token. Every mlx call runs on
the backend's worker thread (mlx streams are per thread). A session asked for the hidden state
(a learned router reads it) runs the model's body and its output head as two calls: mlx-lm's
models end `model.model(...)` then the tied embedding or `lm_head`, and give no hidden state
otherwise.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm import load
from mlx_lm.models.cache import make_prompt_cache

from gateway.backends import register
from gateway.backends.local import LocalBackend, LocalBackendConfig
from gateway.backends.sessions import Distribution, TokenChoice
from gateway.core.request import Sampling
from gateway.models import prepare

LOAD_LOCK = threading.Lock()
FP32_BYTES = 4


class MLXConfig(LocalBackendConfig):
    pass


class MLXRuntime:
    def __init__(self, config: MLXConfig) -> None:
        with LOAD_LOCK:
            prepared = prepare(
                config.model, bytes_per_param=FP32_BYTES, max_memory_gb=config.max_memory_gb
            )
            overrides = rope_overrides(Path(prepared.location))
            loaded: Any = load(prepared.location, model_config=overrides)
            self.model, wrapper = loaded[0], loaded[1]
        self.wrapper: Any = wrapper  # mlx-lm's own tokenizer, for mlx-lm's own generate
        self.tokenizer: Any = wrapper._tokenizer  # the Hugging Face tokenizer it wraps
        self.eos_ids = frozenset(int(i) for i in wrapper.eos_token_ids)
        args = getattr(self.model, "args", None)
        self.vocab_size = len(self.tokenizer)
        self.context_length = int(getattr(args, "max_position_embeddings", None) or 2048)
        self.split = body_and_head(self.model)
        size = getattr(args, "hidden_size", None)
        self.hidden_size = int(size) if self.split is not None and size is not None else None


Head = Callable[[Any], Any]


def body_and_head(model: Any) -> tuple[Any, Head] | None:
    """The model's body (embeddings to the final norm) and its output head, where the model
    has mlx-lm's usual shape; None where it does not (no hidden state for that model)."""
    body = getattr(model, "model", None)
    embed = getattr(body, "embed_tokens", None)
    if body is None or embed is None:
        return None
    head = getattr(model, "lm_head", None)
    args = getattr(model, "args", None)
    tied = getattr(model, "tie_word_embeddings", getattr(args, "tie_word_embeddings", False))
    if tied or head is None:
        return body, embed.as_linear
    return body, head


def rope_overrides(folder: Path) -> dict[str, Any]:
    """Rope settings in the top-level keys mlx-lm reads.

    transformers 5 saves them under `rope_parameters` (per layer type for Gemma 3); mlx-lm
    looks for `rope_theta` (and `rope_local_base_freq`) and silently falls back to defaults,
    which gave SmolLM2 a tenth of its rope base and log-probs off by up to 0.7.
    """
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}  # a hub id: mlx-lm reads the hub's config as published
    params = config.get("rope_parameters")
    if not isinstance(params, dict) or "rope_theta" in config:
        return {}
    if "rope_theta" in params:
        return {"rope_theta": params["rope_theta"]}
    overrides = {}
    if "rope_theta" in params.get("full_attention", {}):
        overrides["rope_theta"] = params["full_attention"]["rope_theta"]
    if "rope_theta" in params.get("sliding_attention", {}):
        overrides["rope_local_base_freq"] = params["sliding_attention"]["rope_theta"]
    return overrides


def as_ints(array: Any) -> list[int]:
    return [int(x) for x in array.tolist()]


def as_floats(array: Any) -> list[float]:
    return [float(x) for x in array.tolist()]


def top(logprobs: Any, k: int) -> list[tuple[int, float]]:
    if k <= 0:
        return []
    k = min(k, logprobs.size)
    ids = mx.argpartition(-logprobs, k - 1)[:k]
    values = logprobs[ids]
    order = mx.argsort(-values)
    return list(zip(as_ints(ids[order]), as_floats(values[order]), strict=True))


def sample(logprobs: Any, sampling: Sampling, key: Any) -> int:
    scaled = logprobs / sampling.temperature
    if sampling.top_k:
        kth = mx.sort(scaled)[-min(sampling.top_k, scaled.size)]
        scaled = mx.where(scaled < kth, float("-inf"), scaled)
    if sampling.top_p < 1.0:
        order = mx.argsort(-scaled)
        probs = mx.softmax(scaled[order])
        drop = (mx.cumsum(probs) - probs) > sampling.top_p
        cut = mx.where(drop, float("-inf"), scaled[order])
        scaled = mx.zeros_like(scaled).at[order].add(cut)
    token: Any = mx.random.categorical(scaled, key=key).item()
    return int(token)


class MLXCore:
    """One sequence's prompt cache and the model's last log-probs (worker thread only)."""

    def __init__(self, runtime: MLXRuntime, hidden: bool = False) -> None:
        self.model = runtime.model
        self.split = runtime.split if hidden else None
        self.cache: Any = make_prompt_cache(self.model)
        self.last: Any = None
        self.hidden: Any = None
        self.key: Any = None
        self.forwarded: list[int] = []

    def extend(self, ids: Sequence[int], k: int | None) -> list[TokenChoice] | None:
        logits = self._forward(mx.array([list(ids)]))
        if k is None:  # only the last position matters: normalise one row, not the prompt's
            logits = logits[-1:]
        logits = logits.astype(mx.float32)
        rows = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        scores = None if k is None else self._score(ids, rows, k)
        self.last = rows[-1]
        mx.eval(self.last)
        self.forwarded.extend(ids)
        return scores

    def _forward(self, inputs: Any) -> Any:
        if self.split is None:
            return self.model(inputs, cache=self.cache)[0]
        body, head = self.split
        states = body(inputs, cache=self.cache)
        self.hidden = states[0, -1].astype(mx.float32)
        return head(states)[0]

    def _score(self, ids: Sequence[int], rows: Any, k: int) -> list[TokenChoice]:
        before = rows[:-1]
        if self.last is not None:
            before = mx.concatenate([self.last[None], before])
        else:
            ids = ids[1:]
        picked = mx.take_along_axis(before, mx.array(list(ids))[:, None], axis=1)[:, 0]
        return [
            TokenChoice(i, lp, top(before[n], k))
            for n, (i, lp) in enumerate(zip(ids, as_floats(picked), strict=True))
        ]

    def _logprobs(self) -> Any:
        if self.last is None:
            raise RuntimeError("the session has no tokens yet")
        return self.last

    def distribution(self, k: int) -> Distribution:
        logprobs = self._logprobs()
        entropy = float(-(mx.exp(logprobs) * mx.where(mx.isinf(logprobs), 0, logprobs)).sum())
        best = top(logprobs, k)
        hidden = None if self.hidden is None else as_floats(self.hidden)
        return Distribution([i for i, _ in best], [lp for _, lp in best], entropy, hidden)

    def pick(self, sampling: Sampling, k: int) -> TokenChoice:
        logprobs = self._logprobs()
        if sampling.greedy:
            token = as_ints(mx.argmax(logprobs)[None])[0]
        else:
            if self.key is None:
                seed = sampling.seed
                if seed is None:
                    seed = int.from_bytes(os.urandom(4))
                self.key = mx.random.key(seed % 2**64)  # offsets may leave the int64 range
            self.key, use = mx.random.split(self.key)
            token = sample(logprobs, sampling, use)
        return TokenChoice(token, as_floats(logprobs[token][None])[0], top(logprobs, k))

    def reuse(self) -> None:
        self.key = None

    def release(self) -> None:
        self.cache = None
        self.last = None
        self.hidden = None
        self.forwarded = []


@register("mlx")
class MLXBackend(LocalBackend):
    kind = "mlx"
    Config = MLXConfig
    settings: MLXConfig

    def load(self) -> MLXRuntime:
        return MLXRuntime(self.settings)

    def new_core(self, runtime: MLXRuntime, hidden: bool) -> MLXCore:
        return MLXCore(runtime, hidden)
