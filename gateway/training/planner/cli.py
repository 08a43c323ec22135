"""`tandem train planner RECIPE`: post-train a hawkeye alias's planner with GRPO (needs the
`train` extra: pip install -e ".[train]").

    tandem train planner examples/train-planner.yaml [--out runs/planner] [--steps 40]

It evaluates the catalog's planner on held-out questions, trains (resumable: run it again to
go on from the last checkpoint), evaluates the trained planner on the same questions, and
writes OUT/planner (a model folder to serve as `planner`), OUT/adapter (the LoRA) and
OUT/curve.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.core.config import CatalogError

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_subparsers(dest="what", required=True)
    planner = what.add_parser("planner", help="post-train a hawkeye planner with GRPO")
    planner.add_argument("recipe", type=Path, help="the recipe YAML")
    planner.add_argument("--out", type=Path, help="output folder (default: the recipe's)")
    planner.add_argument("--steps", type=int, help="GRPO steps (default: the recipe's)")


def main(args: argparse.Namespace) -> int:
    from gateway.models.errors import ModelError
    from gateway.training.planner.config import RecipeError, load_recipe
    from gateway.training.prompts import PromptSetError

    try:
        recipe = load_recipe(args.recipe, out=args.out)
        if args.steps is not None:
            grpo = recipe.grpo.model_copy(update={"steps": args.steps})
            recipe = recipe.model_copy(update={"grpo": grpo})
        return train_planner(recipe)
    except (CatalogError, ModelError, PromptSetError, RecipeError) as exc:
        print(f"tandem train planner: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def train_planner(recipe: object) -> int:
    from gateway.training.planner.config import PlannerRecipe
    from gateway.training.planner.run import run

    assert isinstance(recipe, PlannerRecipe)
    outcome = run(recipe)
    before, after = outcome.before, outcome.after
    ratio = after.mean_plan_tokens / before.mean_plan_tokens if before.mean_plan_tokens else 0.0
    summary = {
        "tasks": recipe.tasks,
        "train_questions": outcome.train_questions,
        "heldout_questions": before.questions,
        "steps": recipe.grpo.steps,
        "before": {k: v for k, v in before.to_json().items() if k != "samples"},
        "after": {k: v for k, v in after.to_json().items() if k != "samples"},
        "plan_tokens_ratio": ratio,
    }
    (recipe.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(
        f"held-out {before.questions} questions: accuracy {before.accuracy:.1%} -> "
        f"{after.accuracy:.1%}, plan tokens {before.mean_plan_tokens:.1f} -> "
        f"{after.mean_plan_tokens:.1f} ({ratio:.0%}), words {before.mean_plan_words:.1f} -> "
        f"{after.mean_plan_words:.1f}\nplanner: {outcome.planner}\nLoRA: {outcome.adapter}\n"
        f"curve: {outcome.curve}"
    )
    return 0
