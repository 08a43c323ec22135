"""GRPO on the planner with TRL's GRPOTrainer and a LoRA (peft); resumable from the last
checkpoint in `OUT/checkpoints`. Writes `OUT/adapter` (the LoRA, for the base model) and
`OUT/planner` (the LoRA merged into the base: a model folder the transformers backend serves).
"""

from __future__ import annotations

import asyncio
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.backends.base import Backend
from gateway.core.plain_chat import DEFAULT_PLAIN_CHAT, PLAIN_CHATS, PlainChat
from gateway.policies.hawkeye import HawkeyeParams
from gateway.training.planner.config import PlannerRecipe
from gateway.training.planner.data import Question
from gateway.training.planner.reward import Counter, PlanReward, words
from gateway.training.planner.serving import plan_prompt

#: peft 0.21 still reads transformers' old names; nothing a user of this command can change
LIBRARY_DEPRECATIONS = (r"`is_gradient_checkpointing` is deprecated",)


@dataclass
class Trained:
    planner: Path
    adapter: Path
    step: int
    log_history: list[dict[str, Any]]


def rows(
    tokenizer: Any,
    questions: list[Question],
    params: HawkeyeParams,
    plain: PlainChat = PLAIN_CHATS[DEFAULT_PLAIN_CHAT],
) -> list[dict[str, Any]]:
    """The training set in TRL's form; `question` and `targets` reach the reward function."""
    return [
        {
            "prompt": plan_prompt(tokenizer, q.text, params, plain),
            "question": q.text,
            "targets": list(q.targets),
        }
        for q in questions
    ]


def grpo_args(recipe: PlannerRecipe, params: HawkeyeParams, checkpoints: Path) -> Any:
    import torch
    from trl.trainer.grpo_config import GRPOConfig

    g = recipe.grpo
    return GRPOConfig(
        output_dir=str(checkpoints),
        max_steps=g.steps,
        per_device_train_batch_size=g.generations * g.questions_per_step,
        num_generations=g.generations,
        gradient_accumulation_steps=1,
        max_completion_length=params.plan_max_tokens,
        learning_rate=g.learning_rate,
        lr_scheduler_type="constant",
        beta=g.beta,
        temperature=g.temperature,
        logging_steps=1,
        save_strategy="steps",
        save_steps=g.save_every,
        report_to="none",
        bf16=False,
        seed=recipe.seed,
        data_seed=recipe.seed,
        disable_tqdm=False,
        # plans are short: memory is not the limit, and recomputing activations costs a third
        # more time (named so, not by TRL's deprecated `gradient_checkpointing`)
        activation_checkpointing=False,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning helps copies to a GPU only
    )


def lora(recipe: PlannerRecipe) -> Any:
    from peft import LoraConfig

    c = recipe.lora
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=c.r,
        lora_alpha=c.alpha,
        lora_dropout=c.dropout,
        target_modules=c.target_modules,
    )


def train(
    recipe: PlannerRecipe,
    base: str,
    questions: list[Question],
    params: HawkeyeParams,
    expander: Backend,
    loop: asyncio.AbstractEventLoop,
    plain: PlainChat = PLAIN_CHATS[DEFAULT_PLAIN_CHAT],
) -> Trained:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.grpo_trainer import GRPOTrainer

    from gateway.core.tokens import has_chat_template

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    reward = PlanReward(
        expander,
        params,
        recipe.answer_max_tokens,
        recipe.reward,
        loop,
        has_chat_template(tokenizer),
        counter(tokenizer, recipe.reward.unit),
        plain,
    )
    checkpoints = recipe.out / "checkpoints"
    last = last_checkpoint(checkpoints)
    with warnings.catch_warnings():
        for message in LIBRARY_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        if last is not None and step_of(last) >= recipe.grpo.steps:
            return finished(model, last, tokenizer, recipe.out)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=grpo_args(recipe, params, checkpoints),
            train_dataset=Dataset.from_list(rows(tokenizer, questions, params, plain)),
            processing_class=tokenizer,
            peft_config=lora(recipe),
        )
        trainer.train(resume_from_checkpoint=last)
    state = trainer.state
    return save(trainer.model, tokenizer, recipe.out, state.global_step, state.log_history)


def finished(model: Any, checkpoint: str, tokenizer: Any, out: Path) -> Trained:
    """A run that already reached its steps: the checkpoint's LoRA, not trained further
    (the trainer, resumed at its last step, would train one more)."""
    from peft import PeftModel

    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    lora = PeftModel.from_pretrained(model, checkpoint)
    return save(lora, tokenizer, out, state["global_step"], state["log_history"])


def counter(tokenizer: Any, unit: str) -> Counter:
    if unit == "words":
        return words
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def last_checkpoint(folder: Path) -> str | None:
    """The latest `checkpoint-STEP` the trainer saved in `folder`, if any."""
    steps = [
        (int(p.name.removeprefix("checkpoint-")), p)
        for p in folder.glob("checkpoint-*")
        if p.is_dir() and p.name.removeprefix("checkpoint-").isdigit()
    ]
    return str(max(steps)[1]) if steps else None


def step_of(checkpoint: str) -> int:
    return int(Path(checkpoint).name.removeprefix("checkpoint-"))


def save(model: Any, tokenizer: Any, out: Path, step: int, log: list[dict[str, Any]]) -> Trained:
    """The LoRA, and the LoRA merged into the base model, each with the tokenizer."""
    adapter, planner = out / "adapter", out / "planner"
    model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    merged = model.merge_and_unload()
    merged.save_pretrained(planner)
    tokenizer.save_pretrained(planner)
    return Trained(planner, adapter, int(step), list(log))
