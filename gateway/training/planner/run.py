"""One `tandem train planner` run: the held-out evaluation of the catalog's planner, GRPO,
then the same evaluation of the trained planner, the curve and a summary in `OUT`.

Each finished phase leaves a file (`eval-before.json`, checkpoints, `eval-after.json`), so a
run started again with the same recipe goes on where it stopped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.api.routing import build_router
from gateway.backends.base import Backend
from gateway.core.config import CatalogError, load_catalog, settings_from_env
from gateway.models.prepare import prepare
from gateway.policies.hawkeye import HawkeyeParams, HawkeyePolicy
from gateway.training.planner.config import PlannerRecipe
from gateway.training.planner.data import Question, split
from gateway.training.planner.evaluate import Evaluation, evaluate

T = TypeVar("T")


@dataclass
class Roles:
    planner: Backend
    expander: Backend
    params: HawkeyeParams
    base: str  # the planner's weights, as a folder transformers loads


def roles(recipe: PlannerRecipe) -> Roles:
    """The alias's two backends (not started) and parameters, as the server would build them."""
    settings = settings_from_env(config=recipe.catalog)
    source = str(settings.catalog_path())
    router = build_router(load_catalog(settings), source)
    route = router.routes.get(recipe.alias)
    if route is None or not isinstance(route.policy, HawkeyePolicy):
        found = [a for a, r in router.routes.items() if isinstance(r.policy, HawkeyePolicy)]
        raise CatalogError(
            source, f"models.{recipe.alias}", f"not a hawkeye alias; hawkeye aliases: {found}"
        )
    planner = route.policy.backends["planner"]
    if planner.kind != "transformers":
        raise CatalogError(
            source,
            f"models.{recipe.alias}.backends.planner",
            f"the planner must run in-process on transformers to be trained, not '{planner.kind}'",
        )
    assert isinstance(route.params, HawkeyeParams)
    params = route.params
    if recipe.plan_max_tokens is not None:
        params = params.model_copy(update={"plan_max_tokens": recipe.plan_max_tokens})
    base = prepare(planner.config.model).location
    return Roles(planner, route.policy.backends["expander"], params, base)


def trained_backend(roles: Roles, folder: Path, threads: int | None) -> Backend:
    from gateway.backends.transformers import TransformersBackend

    update: dict[str, Any] = {"model": str(folder)}
    if threads:
        update["threads"] = threads
    return TransformersBackend("trained-planner", roles.planner.config.model_copy(update=update))


def phase(
    path: Path,
    stamp: dict[str, Any],
    make: Coroutine[Any, Any, Evaluation],
    loop: asyncio.AbstractEventLoop,
) -> Evaluation:
    """An evaluation, read back from `path` when a previous run finished it for the same
    `stamp` (the planner and questions, or the training step it was made at)."""
    if path.is_file() and (saved := json.loads(path.read_text())).get("stamp") == stamp:
        make.close()
        return Evaluation.from_json(saved)
    result = loop.run_until_complete(make)
    path.write_text(json.dumps({"stamp": stamp, **result.to_json()}, indent=1) + "\n")
    return result


async def evaluated(
    planner: Backend, roles: Roles, held: list[Question], recipe: PlannerRecipe, label: str
) -> Evaluation:
    await planner.start()
    try:
        return await evaluate(
            planner, roles.expander, held, roles.params, recipe.answer_max_tokens, label
        )
    finally:
        await planner.aclose()


@dataclass
class Outcome:
    before: Evaluation
    after: Evaluation
    planner: Path
    adapter: Path
    curve: Path
    train_questions: int


def run(recipe: PlannerRecipe) -> Outcome:
    from gateway.training.planner.curve import plot
    from gateway.training.planner.train import train

    if recipe.threads:
        import torch

        torch.set_num_threads(recipe.threads)
    found = split(recipe.tasks, recipe.train_questions, recipe.heldout_questions, recipe.seed)
    r = roles(recipe)
    recipe.out.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(r.expander.start())
        # what an evaluation depends on besides the planner
        held = {
            "questions": [q.id for q in found.heldout],
            "plan_max_tokens": r.params.plan_max_tokens,
            "answer_max_tokens": recipe.answer_max_tokens,
        }
        before = phase(
            recipe.out / "eval-before.json",
            {"planner": r.base, **held},
            evaluated(r.planner, r, found.heldout, recipe, "before"),
            loop,
        )
        trained = train(
            recipe, r.base, found.train, r.params, r.expander, loop, r.planner.plain_chat
        )
        after = phase(
            recipe.out / "eval-after.json",
            {"step": trained.step, **held},
            evaluated(
                trained_backend(r, trained.planner, recipe.threads),
                r,
                found.heldout,
                recipe,
                "after",
            ),
            loop,
        )
    finally:
        loop.run_until_complete(r.expander.aclose())
        loop.close()
    curve = recipe.out / "curve.png"
    plot(trained.log_history, curve, f"GRPO on {', '.join(recipe.tasks)}", recipe.reward.unit)
    return Outcome(before, after, trained.planner, trained.adapter, curve, len(found.train))
