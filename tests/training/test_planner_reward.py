"""`tandem train planner`'s reward on constructed cases: the grader, HAWKEYE's squared length
penalty, and the answer written from each plan through the `hawkeye` policy's own code path
(an expander that answers with the plan's last number, or the question's when it gets none)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from gateway.backends.base import Backend
from gateway.core.events import Delta, EventStream, Finish, Usage
from gateway.core.plain_chat import PLAIN_CHATS
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest
from gateway.policies.hawkeye import HawkeyeParams
from gateway.training.planner.config import RewardConfig
from gateway.training.planner.data import grade, split
from gateway.training.planner.reward import PlanReward, length_penalty, score
from gateway.training.planner.serving import served_plan

PAPER = RewardConfig(coefficient=0.01, fraction=0.3)
DIGITS = re.compile(r"\d+")


class LastNumber(Backend):
    """An expander whose answer is the last number of its prompt, so the test can tell which
    plan (or none) reached it, and records every prompt it was sent."""

    kind = "last-number"

    def __init__(self) -> None:
        super().__init__("expander", None)
        self.prompts: list[str] = []

    async def health(self) -> None:
        return None

    def chat(self, request: ChatCompletionRequest) -> EventStream:
        return self._answer(request.messages[-1].text())

    def complete(self, request: CompletionRequest) -> EventStream:
        raise NotImplementedError

    async def _answer(self, prompt: str) -> EventStream:
        self.prompts.append(prompt)
        last = DIGITS.findall(prompt)[-1]
        yield Delta(0, f"The answer is {last}.")
        yield Finish(0, "stop")
        yield Usage(1, 1)


@pytest.mark.parametrize(
    ("plan_words", "reference_words", "penalty"),
    [(6, 20, 0.0), (7, 20, 0.01), (10, 20, 0.16), (10, 1, 1.0), (0, 1, 0.0)],
)
def test_the_penalty_is_squared_beyond_a_fraction_of_the_reference(
    plan_words: int, reference_words: int, penalty: float
) -> None:
    # 0.3 of 20 words allows 6; 0.3 of one word allows none (the paper rounds down)
    assert length_penalty(plan_words, reference_words, PAPER) == pytest.approx(penalty)


def test_coefficient_and_fraction_are_the_recipe_s() -> None:
    assert length_penalty(10, 20, RewardConfig(coefficient=0.5, fraction=0.0)) == 50.0
    assert length_penalty(10, 20, RewardConfig(coefficient=0.01, fraction=0.5)) == 0.0


@pytest.mark.parametrize(
    ("answer", "targets", "right"),
    [
        ("The answer is 12.", ("12",), 1.0),
        ('The answer to "What is 4 plus 8?" is 12', ("12",), 1.0),
        ("4+8=16", ("12",), 0.0),
        ("1,200 apples", ("1200",), 1.0),
        ("no number", ("3",), 0.0),
        ("Three, I think.", ("three", "3"), 1.0),
        ("I have three", ("three",), 0.0),
    ],
)
def test_the_grader(answer: str, targets: tuple[str, ...], right: float) -> None:
    assert grade(answer, targets) == right


def test_score_is_grade_minus_penalty() -> None:
    ten_words = "one two three four five six seven eight nine ten"
    scored = score(ten_words, "It is 5", ["5"], PAPER)
    assert (scored.grade, scored.plan_length) == (1.0, 10)
    assert scored.reward == pytest.approx(1.0 - 0.01 * 10**2)
    assert score(ten_words, "It is 6", ["5"], PAPER).reward == pytest.approx(-1.0)
    # in tokens (here: characters), a 48-character plan against a 4-character reference
    tokens = RewardConfig(coefficient=0.01, fraction=0.5, unit="tokens")
    scored = score(ten_words, "It is 5", ["five"], tokens, count=len)
    assert scored.reward == pytest.approx(0.0 - 0.01 * (48 - 2) ** 2)


def test_a_plan_is_cut_where_a_base_model_s_transcript_would_stop() -> None:
    assert served_plan("2 + 3 = 5\nQuestion: and more", templated=False) == "2 + 3 = 5"
    assert served_plan("2 + 3 = 5\nQuestion: more", templated=True) == "2 + 3 = 5\nQuestion: more"
    transcript = PLAIN_CHATS["transcript"]
    assert served_plan("2 + 3 = 5\nuser: and more", False, transcript) == "2 + 3 = 5"


def test_each_plan_reaches_the_expander_through_the_policy() -> None:
    expander = LastNumber()
    loop = asyncio.new_event_loop()
    reward = PlanReward(expander, HawkeyeParams(), 8, PAPER, loop, templated=False)
    metrics: dict[str, float] = {}
    completions = ["2 + 3 = 5", "2 + 3 = 6", "", "so 2 + 3 = 5\nQuestion: 7 8 9 10"]
    try:
        rewards = reward(
            prompts=["p"] * 4,
            completions=completions,
            completion_ids=[[1] * 5, [1] * 5, [], [1] * 12],
            question=["What is 2 plus 3?"] * 4,
            targets=[["5"]] * 4,
            log_metric=metrics.__setitem__,
        )
    finally:
        loop.close()
    # right with a 5-word plan; wrong; no plan: the policy's fallback asks the question
    # alone (its last number is 3); the 6-word plan cut at the next turn is right
    assert rewards == pytest.approx([1 - 0.25, -0.25, 0.0, 1 - 0.36])
    # the plans are answered concurrently, in any order
    assert sum("Chain of thought:\n2 + 3 = 5\n" in p for p in expander.prompts) == 1
    assert sum("Chain of thought:\nso 2 + 3 = 5\n\n" in p for p in expander.prompts) == 1
    assert "What is 2 plus 3?" in expander.prompts
    assert metrics == {"plan_length": pytest.approx(16 / 4), "grade": 0.5}


def test_held_out_questions_are_never_trained_on() -> None:
    found = split(["bigbench:arithmetic/1_digit_addition"], train=200, heldout=30, seed=3)
    held = {q.text for q in found.heldout}
    assert len(held) == 30
    assert not held & {q.text for q in found.train}
    # 100 distinct sums: every one not held out is trained on
    assert len(found.train) == 70
    again = split(["bigbench:arithmetic/1_digit_addition"], train=200, heldout=30, seed=3)
    assert again == found


def test_the_recipe_file(tmp_path: Path) -> None:
    from gateway.training.planner.config import RecipeError, load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(
        "tasks: [bigbench:arithmetic/1_digit_addition]\nout: run\nreward: {fraction: 0.5}\n"
    )
    recipe = load_recipe(path)
    assert recipe.out == tmp_path / "run"
    assert (recipe.reward.coefficient, recipe.reward.fraction) == (0.01, 0.5)
    assert load_recipe(path, out=Path("elsewhere")).out == Path("elsewhere")
    path.write_text("tasks: []\n")
    with pytest.raises(RecipeError, match="tasks"):
        load_recipe(path)
