"""Questions for the planner: BIG-bench tasks from the `bigbench` package, asked zero-shot (the
plan prompt is the whole prompt, as the policy serves it), split into training and held-out
questions that share no text.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from gateway.training.prompts import PromptSetError, bigbench_tasks, normal

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    targets: tuple[str, ...]

    @property
    def reference(self) -> str:
        """The answer whose length the plan's is held to (the paper's reference answer)."""
        return self.targets[0]


@dataclass(frozen=True)
class Split:
    train: list[Question]
    heldout: list[Question]


def task_questions(task: str) -> list[Question]:
    """Every generative example of `bigbench:TASK` (or `bigbench:TASK/SUBTASK`)."""
    name = task.removeprefix("bigbench:")
    if name == task:
        raise PromptSetError(f"'{task}': planner tasks are BIG-bench tasks, bigbench:TASK")
    path = bigbench_tasks() / name / "task.json"
    try:
        examples = json.loads(path.read_text())["examples"]
    except (OSError, ValueError, KeyError):
        raise PromptSetError(f"no BIG-bench task '{name}' with generative examples") from None
    found = [
        Question(f"{task}:{i}", str(e["input"]), targets)
        for i, e in enumerate(examples)
        if (targets := _targets(e))
    ]
    if not found:
        raise PromptSetError(f"BIG-bench task '{name}' has no generative examples")
    return found


def _targets(example: dict[str, Any]) -> tuple[str, ...]:
    target = example.get("target", [])
    return (target,) if isinstance(target, str) else tuple(str(t) for t in target)


def split(tasks: list[str], train: int, heldout: int, seed: int) -> Split:
    """Per task, `heldout` questions then `train` others, in a seeded order; a training
    question whose text is also held out is dropped (some tasks repeat a question)."""
    train_set: list[Question] = []
    held_set: list[Question] = []
    for task in tasks:
        questions = task_questions(task)
        random.Random(seed).shuffle(questions)
        held = questions[:heldout]
        texts = {normal(q.text) for q in held}
        rest = [q for q in questions[heldout:] if normal(q.text) not in texts]
        held_set += held
        train_set += rest[:train]
    return Split(train_set, held_set)


def grade(answer: str, targets: tuple[str, ...]) -> float:
    """1.0 when the answer is right, else 0.0. A number target: the answer's last number
    equals it (as GSM8K is graded: an expander that restates the question before "... is 7."
    is right); any other target: BIG-bench's exact match, the answer's first line starts
    with it."""
    numbers = NUMBER.findall(answer.replace(",", ""))
    line = normal(answer.strip().split("\n")[0])
    for target in targets:
        if NUMBER.fullmatch(target.strip()):
            if numbers and float(numbers[-1]) == float(target):
                return 1.0
        elif normal(target) and line.startswith(normal(target)):
            return 1.0
    return 0.0
