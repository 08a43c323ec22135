"""`transformers`: a causal LM in this process on torch (CPU here, CUDA when present).

The only module that imports torch and transformers for serving. Every forward pass runs on
the backend's worker thread; each token session owns a `DynamicCache`, so a step reads one new
token whatever the prefix length.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from gateway.backends import register
from gateway.backends.eos import eos_ids
from gateway.backends.local import LocalBackend, LocalBackendConfig
from gateway.backends.sessions import Distribution, TokenChoice
from gateway.core.request import Sampling
from gateway.models import prepare

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# from_pretrained swaps process-wide torch state (meta-device init): one load at a time
LOAD_LOCK = threading.Lock()


class TransformersConfig(LocalBackendConfig):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads")


class TorchRuntime:
    """A loaded model and tokenizer."""

    def __init__(self, config: TransformersConfig) -> None:
        self.device = torch.device(pick_device(config.device))
        self.dtype = pick_dtype(config.dtype, self.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        with LOAD_LOCK:
            prepared = prepare(
                config.model,
                bytes_per_param=torch.finfo(self.dtype).bits // 8,
                max_memory_gb=config.max_memory_gb,
            )
            self.tokenizer: Any = AutoTokenizer.from_pretrained(prepared.location)
            model: Any = AutoModelForCausalLM.from_pretrained(prepared.location, dtype=self.dtype)
            self.model: Any = model.to(self.device).eval()
        self.eos_ids = eos_ids(
            getattr(self.model.generation_config, "eos_token_id", None), self.tokenizer.eos_token_id
        )
        self.vocab_size = len(self.tokenizer)
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048))
        size = getattr(self.model.config, "hidden_size", None)
        self.hidden_size = None if size is None else int(size)


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":  # bf16 matmuls are slow on most CPUs; fp32 there is also exact
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def sample(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    scaled = logits / sampling.temperature
    if sampling.top_k:
        kth = torch.topk(scaled, min(sampling.top_k, scaled.numel())).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(scaled, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        # drop a token once the ones before it already cover top_p
        drop = probs.cumsum(-1) - probs > sampling.top_p
        scaled = scaled.scatter(0, order[drop], float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def top(logprobs: torch.Tensor, k: int) -> list[tuple[int, float]]:
    if k <= 0:
        return []
    values, ids = torch.topk(logprobs, min(k, logprobs.numel()))
    return list(zip(ids.tolist(), values.tolist(), strict=True))


class TorchCore:
    """One sequence's KV cache and the model's last output; used on the worker thread only."""

    def __init__(self, runtime: TorchRuntime, hidden: bool) -> None:
        self.model = runtime.model
        self.device = runtime.device
        self.cache: Any = DynamicCache(config=self.model.config)
        self.last: torch.Tensor | None = None  # log-probs of the next token
        self.hidden: torch.Tensor | None = None
        self.want_hidden = hidden
        self.generator: torch.Generator | None = None
        self.forwarded: list[int] = []

    @torch.inference_mode()
    def extend(self, ids: Sequence[int], k: int | None) -> list[TokenChoice] | None:
        out = self.model(
            input_ids=torch.tensor([list(ids)], device=self.device),
            cache=self.cache,
            use_cache=True,
            logits_to_keep=0 if k is not None else 1,
            output_hidden_states=self.want_hidden,
        )
        rows = torch.log_softmax(out.logits[0].float(), dim=-1)
        if self.want_hidden:
            self.hidden = out.hidden_states[-1][0, -1].float()
        scores = None if k is None else self._score(ids, rows, k)
        self.last = rows[-1]
        self.forwarded.extend(ids)
        return scores

    def _score(self, ids: Sequence[int], rows: torch.Tensor, k: int) -> list[TokenChoice]:
        """Each id's log-prob from the row before it (the first from the previous call)."""
        before = rows[:-1]
        if self.last is not None:
            before = torch.cat([self.last[None], before])
        else:
            ids = ids[1:]
        picked = before.gather(1, torch.tensor(list(ids), device=self.device)[:, None])[:, 0]
        return [
            TokenChoice(i, lp, top(row, k))
            for i, lp, row in zip(ids, picked.tolist(), before, strict=True)
        ]

    def _logprobs(self) -> torch.Tensor:
        if self.last is None:
            raise RuntimeError("the session has no tokens yet")
        return self.last

    @torch.inference_mode()
    def distribution(self, k: int) -> Distribution:
        logprobs = self._logprobs()
        entropy = float(torch.special.entr(logprobs.exp()).sum())
        best = top(logprobs, k)
        hidden = self.hidden.tolist() if self.hidden is not None else None
        return Distribution([i for i, _ in best], [lp for _, lp in best], entropy, hidden)

    @torch.inference_mode()
    def pick(self, sampling: Sampling, k: int) -> TokenChoice:
        logprobs = self._logprobs()
        if sampling.greedy:
            token = int(torch.argmax(logprobs))
        else:
            token = sample(logprobs, sampling, self._generator(sampling.seed))
        return TokenChoice(token, float(logprobs[token]), top(logprobs, k))

    def _generator(self, seed: int | None) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator(device=self.device)
            if seed is None:
                self.generator.seed()
            else:
                # a request's seed is an int64, but the choices' seeds add their index to it
                self.generator.manual_seed(seed % 2**64)
        return self.generator

    def reuse(self) -> None:
        self.generator = None

    def reset(self) -> None:
        """An empty cache, as new: for a rewind a sliding-window cache cannot crop."""
        self.cache = DynamicCache(config=self.model.config)
        self.last = None
        self.hidden = None
        self.forwarded = []

    def release(self) -> None:
        self.cache = None
        self.last = None
        self.hidden = None
        self.forwarded = []


@register("transformers")
class TransformersBackend(LocalBackend):
    kind = "transformers"
    Config = TransformersConfig
    settings: TransformersConfig

    def load(self) -> TorchRuntime:
        return TorchRuntime(self.settings)

    def new_core(self, runtime: TorchRuntime, hidden: bool) -> TorchCore:
        return TorchCore(runtime, hidden)
