"""Prompt sets for collection: a JSONL file, or a BIG-bench task from the `bigbench` package.

A JSONL line is `{"prompt": "..."}` (completion form) or `{"messages": [...]}` (chat form), with
an optional `"targets"` (a string or a list: the task has a grader) and `"id"`. A BIG-bench task
(`bigbench:qa_wikidata`) is read from the package's own task file, without importing it (its
dependencies are not needed), and asked after `shots` solved examples of the same task.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHOTS = 3


class PromptSetError(ValueError):
    """A prompt set that cannot be read."""


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str | None = None  # completion form
    messages: list[dict[str, str]] | None = None  # chat form
    targets: list[str] = field(default_factory=list)


def load_prompts(
    source: str, *, limit: int | None = None, seed: int = 0, form: str = "completion"
) -> list[Prompt]:
    if source.startswith("bigbench:"):
        return bigbench_prompts(source.removeprefix("bigbench:"), limit, seed, form)
    return jsonl_prompts(Path(source), limit)


def jsonl_prompts(path: Path, limit: int | None) -> list[Prompt]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PromptSetError(f"cannot read the prompt set {path}: {exc.strerror}") from None
    prompts: list[Prompt] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            prompts.append(_prompt(json.loads(line), f"{path.stem}:{number}"))
        except (ValueError, TypeError, KeyError) as exc:
            raise PromptSetError(f"{path}, line {number}: {exc}") from None
    return prompts[:limit]


def _prompt(raw: dict[str, Any], default_id: str) -> Prompt:
    targets = raw.get("targets", [])
    targets = [targets] if isinstance(targets, str) else [str(t) for t in targets]
    ident = str(raw.get("id", default_id))
    if isinstance(raw.get("prompt"), str):
        return Prompt(ident, text=raw["prompt"], targets=targets)
    messages = raw.get("messages")
    if isinstance(messages, list) and messages:
        turns = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        return Prompt(ident, messages=turns, targets=targets)
    raise ValueError("a line needs a 'prompt' string or a non-empty 'messages' list")


def bigbench_tasks() -> Path:
    spec = importlib.util.find_spec("bigbench")
    if spec is None or not spec.submodule_search_locations:
        raise PromptSetError("BIG-bench tasks need the package: pip install --no-deps bigbench")
    return Path(spec.submodule_search_locations[0], "benchmark_tasks")


def bigbench_prompts(task: str, limit: int | None, seed: int, form: str) -> list[Prompt]:
    path = bigbench_tasks() / task / "task.json"
    try:
        examples = [e for e in json.loads(path.read_text())["examples"] if _targets(e)]
    except (OSError, ValueError, KeyError):
        raise PromptSetError(f"no BIG-bench task '{task}' with generative examples") from None
    order = random.Random(seed).sample(range(len(examples)), len(examples))
    shots = [examples[i] for i in order[:SHOTS]]
    asked = order[SHOTS:][:limit]
    return [_few_shot(task, i, shots, examples[i], form) for i in asked]


def _few_shot(
    task: str, index: int, shots: list[dict[str, Any]], e: dict[str, Any], form: str
) -> Prompt:
    ident = f"bigbench:{task}:{index}"
    if form == "chat":
        turns = []
        for shot in shots:
            turns += [
                {"role": "user", "content": str(shot["input"])},
                {"role": "assistant", "content": _targets(shot)[0]},
            ]
        turns.append({"role": "user", "content": str(e["input"])})
        return Prompt(ident, messages=turns, targets=_targets(e))
    solved = "".join(f"{s['input']} {_targets(s)[0]}.\n" for s in shots)
    return Prompt(ident, text=solved + str(e["input"]), targets=_targets(e))


def _targets(example: dict[str, Any]) -> list[str]:
    target = example.get("target", [])
    return [target] if isinstance(target, str) else [str(t) for t in target]


def normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".,;:!?\"'").lower())


def correct(answer: str, targets: list[str]) -> bool:
    """BIG-bench's exact match on the answer's first line: it starts with a target, case and
    surrounding punctuation aside."""
    line = normal(answer.split("\n")[0])
    return any(normal(t) and line.startswith(normal(t)) for t in targets)
