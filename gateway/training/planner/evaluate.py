"""Plan length and HAWKEYE accuracy of a planner on held-out questions, greedy, through the
policy: what a client of the alias would get."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.backends.base import Backend
from gateway.models.progress import progress
from gateway.policies.hawkeye import HawkeyeParams
from gateway.training.planner.data import Question, grade
from gateway.training.planner.reward import words
from gateway.training.planner.serving import hawkeye_answer


@dataclass
class Evaluation:
    questions: int = 0
    correct: int = 0
    plan_tokens: int = 0
    plan_words: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.questions else 0.0

    @property
    def mean_plan_tokens(self) -> float:
        return self.plan_tokens / self.questions if self.questions else 0.0

    @property
    def mean_plan_words(self) -> float:
        return self.plan_words / self.questions if self.questions else 0.0

    def to_json(self) -> dict[str, Any]:
        summary = {
            "accuracy": self.accuracy,
            "mean_plan_tokens": self.mean_plan_tokens,
            "mean_plan_words": self.mean_plan_words,
        }
        return {**asdict(self), **summary}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Evaluation:
        names = ("questions", "correct", "plan_tokens", "plan_words", "samples")
        return cls(**{name: raw[name] for name in names})


async def evaluate(
    planner: Backend,
    expander: Backend,
    questions: list[Question],
    params: HawkeyeParams,
    answer_tokens: int,
    label: str,
) -> Evaluation:
    result = Evaluation()
    with progress(len(questions), f"evaluate {label}", unit="question") as bar:
        for question in questions:
            answer = await hawkeye_answer(planner, expander, question.text, params, answer_tokens)
            right = grade(answer.text, question.targets)
            result.questions += 1
            result.correct += int(right)
            result.plan_tokens += answer.plan_tokens
            result.plan_words += words(answer.plan)
            result.samples.append(
                {"id": question.id, "plan": answer.plan, "answer": answer.text, "right": right}
            )
            bar.update()
            bar.set_postfix_str(f"accuracy {result.accuracy:.2f}")
    return result
