"""`llamacpp`: a GGUF model in this process on llama.cpp (llama-cpp-python), served as it is.

The only module (with its tokenizer, `llamacpp_vocab`) that imports llama_cpp. One llama.cpp
context holds every session: each token session owns a sequence id in a KV cache that all
sessions share (`context` cells, any one session may use them all), so a step reads one new token
whatever the prefix, and a rewind removes the sequence's cells past the kept length. Every
forward pass and KV cache call runs on the backend's worker thread. The hidden state is the
final-norm output llama.cpp gives as a token's embedding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import llama_cpp as lc
import numpy as np
from pydantic import Field

from gateway.backends import register
from gateway.backends.llamacpp_dist import NextToken, sample
from gateway.backends.llamacpp_vocab import LlamaTokenizer
from gateway.backends.local import LocalBackend, LocalBackendConfig
from gateway.backends.sessions import Distribution, TokenChoice
from gateway.core.errors import Overloaded, UpstreamError
from gateway.core.request import Sampling
from gateway.models.errors import ModelError
from gateway.models.gguf_file import gguf_file
from gateway.models.prepare import check_memory

# llama-cpp-python prints llama.cpp's log to stderr by its logger's level, with an outdated
# level table (warnings count as errors): load-time warnings are noise, failures raise here
logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
#: tokens per forward pass when every position's log-probs are kept (a 262k vocabulary makes
#: each row 1 MiB)
SCORE_CHUNK = 32
NO_KV_SLOT = 1  # llama_decode's answer when the KV cache has no room for the batch

Array = np.ndarray[Any, np.dtype[Any]]


class LlamaCppConfig(LocalBackendConfig):
    threads: int | None = Field(
        default=None, ge=1, description="llama.cpp CPU threads (default: the physical cores)"
    )
    context: int = Field(
        default=4096, ge=64, description="KV cache cells shared by all sessions of this backend"
    )
    sessions: int = Field(
        default=32, ge=1, le=256, description="sequences held at once (open and pooled sessions)"
    )
    batch: int = Field(default=256, ge=1, description="prompt tokens per forward pass")


class LlamaRuntime:
    """A loaded model, its one context and the sequence ids free in it (worker thread only)."""

    def __init__(self, config: LlamaCppConfig) -> None:
        path = gguf_file(config.model)
        check_memory(config.model, path.stat().st_size, 1, config.max_memory_gb)
        lc.llama_backend_init()
        params = lc.llama_model_default_params()
        self.model = lc.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise ModelError(f"llama.cpp could not load '{path.name}' (not a model it knows?)")
        self.ctx = lc.llama_init_from_model(self.model, context_params(config, self.model))
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise ModelError(f"llama.cpp could not make a context for '{path.name}'")
        self.memory = lc.llama_get_memory(self.ctx)
        self.batch_size = int(lc.llama_n_batch(self.ctx))  # llama.cpp caps it at the context
        self.batch = lc.llama_batch_init(self.batch_size, 0, 1)
        self.tokenizer = LlamaTokenizer(self.model)
        vocab = lc.llama_model_get_vocab(self.model)
        self.vocab_size = self.tokenizer.n_vocab
        self.eos_ids = frozenset(
            i for i in range(self.vocab_size) if lc.llama_vocab_is_eog(vocab, i)
        )
        self.context_length = int(lc.llama_n_ctx(self.ctx))
        self.n_embd = int(lc.llama_model_n_embd(self.model))
        self.hidden_size = self.n_embd  # what a learned router reads
        self.free_seqs = list(range(config.sessions))[::-1]
        self.sessions = config.sessions
        self.embeddings = False
        self.relieve: Callable[[], None] = lambda: None  # frees pooled sequences under pressure
        self.closed = False

    def acquire(self) -> int:
        if not self.free_seqs:
            self.relieve()
        if not self.free_seqs:
            raise Overloaded(
                f"all {self.sessions} llama.cpp sequences are in use (raise the backend's "
                "`sessions`)"
            )
        return self.free_seqs.pop()

    def drop(self, seq: int, keep: int = 0) -> None:
        """Remove a sequence's cells from position `keep` on; with 0 the id is free again."""
        if self.closed:
            return
        if not lc.llama_memory_seq_rm(self.memory, seq, keep, -1):
            raise UpstreamError("llama.cpp could not cut the KV cache of a sequence")
        if keep == 0:
            self.free_seqs.append(seq)

    def decode(self, seq: int, ids: Sequence[int], start: int, outputs: str, embed: bool) -> None:
        """Read `ids` at positions from `start`; keep the last row's (or every row's) logits."""
        fill(self.batch, seq, ids, start, outputs)
        if embed != self.embeddings:
            lc.llama_set_embeddings(self.ctx, embed)
            self.embeddings = embed
        code = lc.llama_decode(self.ctx, self.batch)
        if code == NO_KV_SLOT:  # nothing changed: free the pooled sessions' cells, try again
            self.relieve()
            code = lc.llama_decode(self.ctx, self.batch)
            if code == NO_KV_SLOT:
                raise Overloaded(
                    f"the llama.cpp KV cache ({self.context_length} tokens) is full (raise the "
                    "backend's `context`)"
                )
        if code != 0:
            raise UpstreamError(f"llama.cpp failed a forward pass (llama_decode returned {code})")

    def logits(self, rows: int) -> Array:
        if rows == 1:
            return np.ctypeslib.as_array(lc.llama_get_logits_ith(self.ctx, -1), (self.vocab_size,))
        return np.ctypeslib.as_array(lc.llama_get_logits(self.ctx), (rows, self.vocab_size))

    def hidden(self) -> list[float]:
        pointer = lc.llama_get_embeddings_ith(self.ctx, -1)
        return [float(x) for x in np.ctypeslib.as_array(pointer, (self.n_embd,))]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        lc.llama_batch_free(self.batch)
        lc.llama_free(self.ctx)
        lc.llama_model_free(self.model)


def context_params(config: LlamaCppConfig, model: Any) -> Any:
    params = lc.llama_context_default_params()
    params.n_ctx = min(config.context, int(lc.llama_model_n_ctx_train(model)))
    params.n_batch = params.n_ubatch = config.batch
    params.n_seq_max = config.sessions
    # one cell pool for all sequences: memory is `context` cells, not `context` per session
    params.kv_unified = True
    # a sliding-window cache drops cells a rewind may need again
    params.swa_full = True
    params.embeddings = False
    # measured on CPU: a step at a 1024-token prefix took 47 ms with flash attention, 17 without
    params.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
    params.no_perf = True
    params.n_threads = params.n_threads_batch = config.threads or physical_cores()
    return params


def physical_cores() -> int:
    """The cores this process may run on, hyper-threads counted once: what torch and llama.cpp's
    own programs take by default. llama-cpp-python's default is 4 threads whatever the machine,
    and on 2 cores a step then took twice as long as on one thread (its threads wait for each
    other at every operation)."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores: set[str] = set()
    for cpu in cpus:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def fill(batch: Any, seq: int, ids: Sequence[int], start: int, outputs: str) -> None:
    """One sequence's tokens; `outputs` says which rows' logits to keep: none, last or all."""
    batch.n_tokens = len(ids)
    for n, token in enumerate(ids):
        batch.token[n] = token
        batch.pos[n] = start + n
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq
        batch.logits[n] = outputs == "all"
    batch.logits[len(ids) - 1] = outputs != "none"


class SeqCache:
    """A sequence's KV cells, with the two calls a rewind makes on a transformers cache."""

    def __init__(self, core: LlamaCore) -> None:
        self.core = core

    def get_seq_length(self) -> int:
        return len(self.core.forwarded)

    def crop(self, length: int) -> None:
        """Keep `length` tokens; a negative `length` removes that many (transformers' rule)."""
        keep = length if length >= 0 else len(self.core.forwarded) + length
        core = self.core
        if core.seq is not None and keep < len(core.forwarded):
            core.runtime.drop(core.seq, keep)
            del core.forwarded[keep:]


class LlamaCore:
    """One sequence of the shared context and the model's last log-probs (worker thread only)."""

    def __init__(self, runtime: LlamaRuntime, hidden: bool) -> None:
        self.runtime = runtime
        self.want_hidden = hidden
        self.seq: int | None = None  # taken at the first forward pass, on the worker
        self.forwarded: list[int] = []
        self.last: NextToken | None = None  # what the model expects next
        self.hidden: list[float] | None = None
        self.rng: np.random.Generator | None = None
        self.cache = SeqCache(self)

    def _seq(self) -> int:
        if self.seq is None:
            self.seq = self.runtime.acquire()
        return self.seq

    def _read(self, ids: Sequence[int], outputs: str, embed: bool) -> None:
        self.runtime.decode(self._seq(), ids, len(self.forwarded), outputs, embed)
        self.forwarded.extend(ids)

    def extend(self, ids: Sequence[int], k: int | None) -> list[TokenChoice] | None:
        if k is not None:
            return self._score(ids, k)
        ids = list(ids)
        if not ids:
            return None
        size = self.runtime.batch_size
        # with embeddings on, llama.cpp outputs every position: read the last token alone
        head = ids[:-1] if self.want_hidden else []
        body = ids[len(head) :]
        for chunk in chunks(head, size):
            self._read(chunk, "none", False)
        for n, chunk in enumerate(chunks(body, size)):
            last = n == (len(body) - 1) // size
            self._read(chunk, "last" if last else "none", self.want_hidden and last)
        self.last = NextToken(self.runtime.logits(1))
        if self.want_hidden:
            self.hidden = self.runtime.hidden()
        return None

    def _score(self, ids: Sequence[int], k: int) -> list[TokenChoice]:
        """Each id's log-prob from the row before it (the first from the previous call)."""
        scores: list[TokenChoice] = []
        parts = list(chunks(list(ids), min(SCORE_CHUNK, self.runtime.batch_size)))
        for n, chunk in enumerate(parts):
            self._read(chunk, "all", self.want_hidden and n == len(parts) - 1)
            rows = self.runtime.logits(len(chunk))
            for token, row in zip(chunk, rows, strict=True):
                if self.last is not None:
                    last = self.last
                    scores.append(TokenChoice(token, last.logprob(token), last.top(k)))
                self.last = NextToken(row)
        if self.want_hidden and parts:
            self.hidden = self.runtime.hidden()
        return scores

    def _next(self) -> NextToken:
        if self.last is None:
            raise RuntimeError("the session has no tokens yet")
        return self.last

    def distribution(self, k: int) -> Distribution:
        last = self._next()
        best = last.top(k)
        return Distribution([i for i, _ in best], [lp for _, lp in best], last.entropy, self.hidden)

    def pick(self, sampling: Sampling, k: int) -> TokenChoice:
        last = self._next()
        if sampling.greedy:
            token = last.best()
        else:
            if self.rng is None:
                self.rng = np.random.default_rng(sampling.seed)
            token = sample(last.logprobs(), sampling, self.rng)
        return TokenChoice(token, last.logprob(token), last.top(k))

    def reuse(self) -> None:
        self.rng = None

    def release(self) -> None:
        if self.seq is not None:
            self.runtime.drop(self.seq)
            self.seq = None
        self.forwarded = []
        self.last = None
        self.hidden = None


def chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


@register("llamacpp")
class LlamaCppBackend(LocalBackend):
    kind = "llamacpp"
    Config = LlamaCppConfig
    settings: LlamaCppConfig

    def load(self) -> LlamaRuntime:
        runtime = LlamaRuntime(self.settings)
        runtime.relieve = self.prefix_pool.clear
        return runtime

    def new_core(self, runtime: LlamaRuntime, hidden: bool) -> LlamaCore:
        return LlamaCore(runtime, hidden)

    async def aclose(self) -> None:
        runtime = self._runtime
        if isinstance(runtime, LlamaRuntime):  # cores free their cells on the worker, then go
            await self.worker.run(self.prefix_pool.clear)
            await self.worker.run(runtime.close)
        await super().aclose()
