"""The recipe file of `tandem train planner` (YAML), validated before any model loads.

```yaml
alias: tandem-hawkeye                      # a hawkeye alias of the catalog
tasks: [bigbench:arithmetic/1_digit_addition]
train_questions: 64
heldout_questions: 24
reward: {coefficient: 0.01, fraction: 0.3}
grpo: {steps: 40, generations: 4, learning_rate: 5.0e-5}
lora: {r: 8, alpha: 16}
out: runs/planner
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RewardConfig(Strict):
    """HAWKEYE's: grade - coefficient * max(0, plan length - int(fraction * reference))^2,
    lengths in words (the paper's code) or in the planner's tokens."""

    coefficient: float = Field(default=0.01, ge=0)
    fraction: float = Field(default=0.3, ge=0)
    unit: Literal["words", "tokens"] = "words"


class GrpoConfig(Strict):
    steps: int = Field(default=40, ge=1)
    generations: int = Field(default=4, ge=2, description="plans sampled per question")
    questions_per_step: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=5e-5, gt=0)
    beta: float = Field(default=0.0, ge=0, description="KL weight; 0 needs no reference model")
    temperature: float = Field(default=1.0, gt=0)
    save_every: int = Field(default=5, ge=1, description="steps between resumable checkpoints")


class LoraConfig(Strict):
    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class PlannerRecipe(Strict):
    catalog: Path | None = Field(default=None, description="catalog YAML; default: built-in")
    alias: str = "tandem-hawkeye"
    tasks: list[str] = Field(min_length=1)
    train_questions: int = Field(default=64, ge=1, description="per task")
    heldout_questions: int = Field(default=24, ge=0, description="per task")
    seed: int = 0
    plan_max_tokens: int | None = Field(default=None, ge=1, description="default: the alias's")
    answer_max_tokens: int = Field(default=16, ge=1)
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads")
    reward: RewardConfig = RewardConfig()
    grpo: GrpoConfig = GrpoConfig()
    lora: LoraConfig = LoraConfig()
    out: Path = Path("runs/planner")


class RecipeError(ValueError):
    """A recipe file that cannot be used."""


def load_recipe(path: Path, **overrides: Any) -> PlannerRecipe:
    """The recipe at `path`; relative paths in the file are relative to its folder,
    `overrides` (the command line's) to the working directory."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise RecipeError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path} is not YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping")
    for key in ("catalog", "out"):
        if raw.get(key) is not None:
            raw[key] = path.parent / Path(raw[key]).expanduser()
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return PlannerRecipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(f"{path}: {exc}") from None
