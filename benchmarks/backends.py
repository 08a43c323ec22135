"""Token-session speed per backend and model: tokens/s and per-step latency by prefix length.

    .venv/bin/python -m benchmarks.backends [--steps 16] [--threads 1]
        [--only transformers llamacpp] [--models smollm2-135m] [--prefixes 32 256 1024]

For each prefix length it opens a session on that many tokens of real text, then times, taking
turns:
- `step`: one greedy `session.step()` as a caller sees it (worker-thread hop, forward, pick);
- `collab step`: `next_distribution(8)` then a lazy `append` of its top-1 token, the small
  model's step in the collab loop (forward, log-probs, top-8 and entropy over the vocabulary);
- `bare forward`: the runtime's own one-token forward pass on an equally long cache and a read
  of its logits row into a host array, no session (for llama.cpp: `llama_decode` into the
  session's own sequence, its cell removed again after the clock stops);
and prints each session step's overhead over the bare forward pass. Each in-process backend and
model runs in a process of its own, so the RSS column (the process's peak resident memory so
far: runtime, weights, KV cache) is that backend's alone. Each prefix starts from an empty
cache (`prefix_cache: 0`): llama.cpp keeps every sequence in one cache, and each forward pass
attends over the cells up to the highest one in use, so a closed session left pooled would slow
the next prefix's steps (a serving cost of pooled and concurrent sessions, not of one session's
step). With a KV cache, step time at 1024 tokens should stay within 1.5x of step time at 32.
Numbers, not a test: run it on a quiet machine. The `openai` rows are HTTP sessions against
another Tandem on loopback serving the same transformers model (one request per step, relying
on the prefix cache).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.backends.local import LocalBackend

Forward = Callable[[], "Callable[[], None] | None"]

PREFIXES = (32, 256, 1024)
COLLAB_TOP_K = 8  # the collab policy's default top_k
LOCAL_KINDS = ("transformers", "llamacpp", "mlx")
PARAGRAPH = (
    "Tandem is a gateway that makes a small and a large language model work as one. "
    "A client asks for a model alias, and Tandem decides per request how the two models "
    "share the work, token by token or plan by plan, and reports who wrote what. "
)


def make_backend(kind: str, model: str, threads: int) -> LocalBackend:
    """`threads` 0: the runtime's own default, as the default catalog runs it."""
    threads_or_none = threads or None
    if kind == "transformers":
        from gateway.backends.transformers import TransformersBackend, TransformersConfig

        return TransformersBackend(
            kind, TransformersConfig(model=model, threads=threads_or_none, prefix_cache=0)
        )
    if kind == "llamacpp":
        from gateway.backends.llamacpp import LlamaCppBackend, LlamaCppConfig

        return LlamaCppBackend(
            kind, LlamaCppConfig(model=model, threads=threads_or_none, prefix_cache=0)
        )
    from gateway.backends.mlx import MLXBackend, MLXConfig

    return MLXBackend(kind, MLXConfig(model=model, prefix_cache=0))


def bare_forward(backend: LocalBackend, ids: list[int], session: Any) -> Forward:
    """One token's forward pass on a cache holding `ids` and a read of its logits row into a
    host array, nothing else (run on the worker). It returns what undoes it, if anything."""
    if backend.kind == "llamacpp":
        return bare_llama_decode(session._core, ids[-1])
    core: Any = backend.new_core(backend.runtime, False)
    core.extend(ids, None)
    token = ids[-1]
    if backend.kind == "transformers":
        import torch

        def forward() -> None:
            with torch.inference_mode():
                out = core.model(
                    input_ids=torch.tensor([[token]]), cache=core.cache, logits_to_keep=1
                )
                out.logits[0, -1].float().numpy()

        return forward
    import mlx.core as mx
    import numpy as np

    def forward_mlx() -> None:
        np.asarray(core.model(mx.array([[token]]), cache=core.cache)[0, -1])

    return forward_mlx


def bare_llama_decode(core: Any, token: int) -> Forward:
    """llama.cpp's own decode call for one token and a copy of its logits row (llama.cpp reuses
    the buffer), and nothing else. It reads into the session's own sequence at its next
    position, and its cell is removed again once the clock has stopped: a sequence of its own
    would double the cells that every forward pass of the shared cache attends over."""
    import llama_cpp as lc
    import numpy as np

    runtime = core.runtime

    def forward() -> Callable[[], None]:
        position = len(core.forwarded)
        batch = runtime.batch
        batch.n_tokens = 1
        batch.token[0], batch.pos[0], batch.n_seq_id[0] = token, position, 1
        batch.seq_id[0][0], batch.logits[0] = core.seq, True
        assert lc.llama_decode(runtime.ctx, batch) == 0
        pointer = lc.llama_get_logits_ith(runtime.ctx, -1)
        np.ctypeslib.as_array(pointer, (runtime.vocab_size,)).copy()
        return lambda: runtime.drop(core.seq, position)

    return forward


@dataclass
class Timing:
    """Medians, in seconds: a `step()`, a collab step (`append` of the last top-1 token, then
    `next_distribution(8)`: the small model's step in the collab loop) and a bare forward pass
    with its logits read (nan over HTTP); wall time, and the process's CPU time, which a
    neighbour's load on a shared machine leaves alone (one compute thread: all of it is work)."""

    prefill: float
    prefill_cpu: float
    step: float
    collab: float
    bare: float
    step_cpu: float
    collab_cpu: float
    bare_cpu: float


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(began: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return wall - began[0], cpu - began[1]


async def measure(backend: Any, ids: list[int], steps: int) -> Timing:
    """Steps, collab steps and bare forward passes take turns, so that a neighbour's load hits
    all three alike."""
    local = isinstance(backend, LocalBackend)
    forward: Forward | None = None

    def timed_forward() -> tuple[float, float]:
        assert forward is not None
        began = clocks()
        undo = forward()
        took = since(began)
        if undo is not None:
            undo()
        return took

    step_times: list[tuple[float, float]] = []
    collab_times: list[tuple[float, float]] = []
    bare_times: list[tuple[float, float]] = []
    dist: Any = None

    async def step() -> None:
        began = clocks()
        await session.step()
        step_times.append(since(began))

    async def collab_step() -> None:
        nonlocal dist
        began = clocks()
        dist = await session.next_distribution(COLLAB_TOP_K)
        await session.append(dist.ids[:1])
        collab_times.append(since(began))

    async def bare_step() -> None:
        if local:
            bare_times.append(await backend.worker.run(timed_forward))

    began = clocks()
    async with await backend.open_session(ids) as session:
        dist = await session.next_distribution(COLLAB_TOP_K)
        prefill = since(began)
        await session.append(dist.ids[:1])
        if local:
            forward = await backend.worker.run(lambda: bare_forward(backend, ids, session))
        turns = [step, collab_step, bare_step]
        for n in range(steps):
            # each session step reads the one token the other left pending, as the collab loop
            # and a generation leave it; the order turns, so none always comes first
            for turn in turns[n % 3 :] + turns[: n % 3]:
                await turn()

    def median(times: list[tuple[float, float]], clock: int) -> float:
        return statistics.median(t[clock] for t in times) if times else float("nan")

    return Timing(
        prefill=prefill[0],
        prefill_cpu=prefill[1],
        step=median(step_times, 0),
        collab=median(collab_times, 0),
        bare=median(bare_times, 0),
        step_cpu=median(step_times, 1),
        collab_cpu=median(collab_times, 1),
        bare_cpu=median(bare_times, 1),
    )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def overhead(seconds: float, bare: float) -> str:
    return f"{(seconds / bare - 1) * 100:+.1f}%" if bare == bare else "n/a"


def row(kind: str, model: str, prefix: int, t: Timing) -> str:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f}" if seconds == seconds else "n/a"

    return (
        f"| {kind} | {model} | {prefix} | {t.prefill * 1000:.0f} | {t.prefill_cpu * 1000:.0f} | "
        f"{ms(t.step)} | {ms(t.collab)} | {ms(t.bare)} | {overhead(t.step, t.bare)} | "
        f"{overhead(t.collab, t.bare)} | {ms(t.step_cpu)} | {ms(t.collab_cpu)} | "
        f"{ms(t.bare_cpu)} | {overhead(t.collab_cpu, t.bare_cpu)} | {1 / t.step:.1f} | "
        f"{1 / t.step_cpu:.1f} | {peak_rss_mib():.0f} |"
    )


HEADER = (
    "| backend | model | prefix | prefill ms | prefill CPU ms | step ms | collab step ms | "
    "bare forward ms | step overhead | collab step overhead | step CPU ms | collab step CPU ms | "
    "bare forward CPU ms | collab step overhead, CPU | tokens/s | tokens/s by CPU time | "
    "peak RSS MiB |\n" + "|---" * 17 + "|"
)


async def bench_local(kind: str, model: str, args: argparse.Namespace) -> LocalBackend:
    backend = make_backend(kind, model, args.threads)
    await backend.start()
    text_ids = backend.tokenizer.encode(PARAGRAPH * 80)
    await measure(backend, text_ids[:32], 2)  # warm-up
    for prefix in args.prefixes:
        result = await measure(backend, text_ids[:prefix], args.steps)
        print(row(kind, model, prefix, result), flush=True)
    return backend


async def bench_child(kind: str, model: str, args: argparse.Namespace) -> None:
    backend = await bench_local(kind, model, args)
    await backend.aclose()


async def bench_http(model: str, args: argparse.Namespace) -> None:
    """A session over HTTP against a Tandem serving `model` on transformers."""
    import tempfile
    from pathlib import Path

    import yaml

    from gateway.backends.openai_http import OpenAIBackend, OpenAIBackendConfig
    from gateway.backends.openai_sessions import HTTPSessions
    from gateway.core.config import Settings
    from gateway.server.app import create_app
    from loadtests.fake_upstream import ServerThread

    catalog = {
        "backends": {
            "m": {"kind": "transformers", "model": model, "threads": args.threads or None}
        },
        "models": {"m": {"policy": "direct", "backends": {"main": "m"}}},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalog.yaml"
        path.write_text(yaml.safe_dump(catalog))
        app = create_app(Settings(config=path))
        with ServerThread(app) as server:
            remote = OpenAIBackend(
                "remote", OpenAIBackendConfig(base_url=server.url + "/v1", model="m")
            )
            await remote.start()
            try:
                local = app.state.tandem.router.backends["m"]
                sessions = HTTPSessions(remote, local.tokenizer)
                text_ids = local.tokenizer.encode(PARAGRAPH * 80)
                await measure(sessions, text_ids[:32], 2)
                for prefix in args.prefixes:
                    result = await measure(sessions, text_ids[:prefix], args.steps)
                    print(row("openai (HTTP, Tandem)", model, prefix, result))
            finally:
                await remote.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch / llama.cpp CPU threads; 0: their own defaults",
    )
    parser.add_argument("--only", nargs="+", choices=[*LOCAL_KINDS, "openai"])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--prefixes", nargs="+", type=int, default=list(PREFIXES))
    parser.add_argument("--child", nargs=2, metavar=("KIND", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one backend in this process: its rows only
        asyncio.run(bench_child(args.child[0], args.child[1], args))
        return
    print(HEADER)
    sys.stdout.flush()
    common = ["--steps", str(args.steps), "--threads", str(args.threads), "--prefixes"]
    common += [str(p) for p in args.prefixes]
    for kind in LOCAL_KINDS:
        if args.only is None or kind in args.only:
            for model in args.models:
                child = ["--child", kind, model, *common]
                subprocess.run([sys.executable, "-m", "benchmarks.backends", *child], check=True)
    if args.only is None or "openai" in args.only:
        asyncio.run(bench_http(args.models[0], args))


if __name__ == "__main__":
    main()
