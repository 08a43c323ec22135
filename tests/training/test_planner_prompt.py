"""The planner is trained on the very token ids the `hawkeye` policy sends it: TRL's own
tokenisation of the training prompt equals the transformers backend's of the planner request,
for a tokenizer with a chat template (SmolLM2's) and one without (a base model's)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.core.tokens import chat_prompt, encode_prompt, has_chat_template
from gateway.models import prepare
from gateway.policies.hawkeye import HawkeyeParams, planner_request
from gateway.training.planner.serving import plan_prompt, question_request

QUESTION = "What is 4 plus 8?"


def trl_ids(tokenizer: Any, prompt: Any) -> list[int]:
    """What GRPOTrainer generates from, through its own method."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    trainer = SimpleNamespace(
        processing_class=tokenizer,
        _is_vlm=False,
        environment_factories=None,
        chat_template=None,
        tools=None,
        chat_template_kwargs={},
    )
    ids, _, _ = GRPOTrainer._tokenize_prompts(trainer, [prompt])  # type: ignore[arg-type]
    return list(ids[0])


@pytest.mark.parametrize("templated", [True, False], ids=["chat template", "base model"])
def test_training_prompts_are_the_served_prompts(templated: bool) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(prepare("smollm2-135m").location))
    if not templated:
        tokenizer.chat_template = None
    assert has_chat_template(tokenizer) is templated
    params = HawkeyeParams()
    served = planner_request(question_request(QUESTION, params, 16), params).messages
    backend = encode_prompt(tokenizer, chat_prompt(tokenizer, served), templated=templated)
    prompt = plan_prompt(tokenizer, QUESTION, params)
    assert isinstance(prompt, list) is templated
    assert trl_ids(tokenizer, prompt) == backend
    assert "Write a concise chain of thought" in tokenizer.decode(backend)
