"""HAWKEYE's reward for one sampled plan: the task's grader on the answer the expander writes
from it, minus a squared penalty on the plan's words beyond a fraction of the reference
answer's (the paper's public code: 0.01 * max(0, words - int(0.3 * reference words))^2).
Lengths are words, as there, or the planner's tokens (`unit`), which a plan cannot shorten by
leaving out spaces."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.backends.base import Backend
from gateway.core.plain_chat import DEFAULT_PLAIN_CHAT, PLAIN_CHATS, PlainChat
from gateway.policies.hawkeye import HawkeyeParams
from gateway.training.planner.config import RewardConfig
from gateway.training.planner.data import grade
from gateway.training.planner.serving import Replayed, hawkeye_answer, served_plan


def words(text: str) -> int:
    return len(text.split())


Counter = Callable[[str], int]


def length_penalty(plan_length: int, reference_length: int, config: RewardConfig) -> float:
    allowed = int(config.fraction * reference_length)
    return config.coefficient * max(0, plan_length - allowed) ** 2


@dataclass(frozen=True)
class Scored:
    reward: float
    grade: float
    plan_length: int
    answer: str


def score(
    plan: str, answer: str, targets: Sequence[str], config: RewardConfig, count: Counter = words
) -> Scored:
    """`count`: the length of a text in the config's unit."""
    right = grade(answer, tuple(targets))
    length = count(plan)
    penalty = length_penalty(length, count(targets[0]), config)
    return Scored(right - penalty, right, length, answer)


def completion_text(completion: Any) -> str:
    """TRL's completion: text, or the assistant turns of a conversational prompt."""
    if isinstance(completion, str):
        return completion
    return "".join(str(turn.get("content") or "") for turn in completion)


class PlanReward:
    """TRL's reward function: each sampled plan is replayed through the `hawkeye` policy to the
    alias's expander, and the answer is graded. Runs on `loop`, where the expander started."""

    __name__ = "hawkeye"

    def __init__(
        self,
        expander: Backend,
        params: HawkeyeParams,
        answer_tokens: int,
        config: RewardConfig,
        loop: asyncio.AbstractEventLoop,
        templated: bool,
        count: Counter = words,
        plain: PlainChat = PLAIN_CHATS[DEFAULT_PLAIN_CHAT],
    ) -> None:
        self.expander, self.params, self.answer_tokens = expander, params, answer_tokens
        self.config, self.loop, self.templated, self.count = config, loop, templated, count
        self.plain = plain  # how the planner's backend renders chat without a template

    def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]],
        question: list[str],
        targets: list[list[str]],
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        plans = [served_plan(completion_text(c), self.templated, self.plain) for c in completions]
        tokens = [len(ids) for ids in completion_ids]
        scored = self.loop.run_until_complete(self.score_all(plans, tokens, question, targets))
        if log_metric is not None and scored:
            log_metric("plan_length", sum(s.plan_length for s in scored) / len(scored))
            log_metric("grade", sum(s.grade for s in scored) / len(scored))
        return [s.reward for s in scored]  # TRL: None marks an unscored one

    async def score_all(
        self, plans: list[str], tokens: list[int], questions: list[str], targets: list[list[str]]
    ) -> list[Scored]:
        async def one(plan: str, count: int, question: str, gold: list[str]) -> Scored:
            planner = Replayed(plan, count)
            answer = await hawkeye_answer(
                planner, self.expander, question, self.params, self.answer_tokens
            )
            return score(answer.plan, answer.text, gold, self.config, self.count)

        jobs = zip(plans, tokens, questions, targets, strict=True)
        return list(await asyncio.gather(*(one(*job) for job in jobs)))
