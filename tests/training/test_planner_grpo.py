"""A CPU smoke run of `tandem train planner`: a tiny random planner and expander on SmolLM2's
real tokenizer, two GRPO steps on BIG-bench questions, a resumed third step, a run that has
nothing left to train, then the trained folder served as the `planner` of a catalog, and the
LoRA on the base model."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path

import pytest

from gateway.api.routing import build_router
from gateway.core.config import load_catalog, settings_from_env
from gateway.core.events import Delta, Report
from gateway.core.protocol import ChatCompletionRequest
from gateway.models import prepare
from gateway.server.cli import main
from gateway.training.planner.train import LIBRARY_DEPRECATIONS
from tests.tiny import tiny_model

QUESTION = ChatCompletionRequest.model_validate(
    {"model": "hawk", "messages": [{"role": "user", "content": "What is 2 plus 3?"}],
     "max_tokens": 12, "temperature": 0}
)  # fmt: skip


def catalog(folder: Path, planner: Path, expander: Path) -> Path:
    path = folder / "catalog.yaml"
    path.write_text(
        "backends:\n"
        f"  planner: {{kind: transformers, model: '{planner}', threads: 1}}\n"
        f"  expander: {{kind: transformers, model: '{expander}', threads: 1}}\n"
        "models:\n"
        "  hawk:\n"
        "    policy: hawkeye\n"
        "    backends: {planner: planner, expander: expander}\n"
        "    params: {plan_max_tokens: 8}\n"
    )
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's folder after two steps and a resumed third; the run is in `run/`."""
    folder = tmp_path_factory.mktemp("planner")
    tokenizer = Path(prepare("smollm2-135m").location)
    tiny_model(folder / "base", tokenizer, seed=0)
    tiny_model(folder / "expander", tokenizer, seed=1)
    catalog(folder, folder / "base", folder / "expander")
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        "catalog: catalog.yaml\nalias: hawk\ntasks: [bigbench:arithmetic/1_digit_addition]\n"
        "train_questions: 4\nheldout_questions: 2\nanswer_max_tokens: 4\nthreads: 1\n"
        "grpo: {steps: 2, generations: 2, save_every: 1, learning_rate: 0.05}\n"
        "lora: {r: 2, alpha: 4}\nout: run\n"
    )
    assert main(["train", "planner", str(recipe)]) == 0
    first = json.loads((folder / "run/checkpoints/checkpoint-2/trainer_state.json").read_text())
    (folder / "first-log.json").write_text(json.dumps(first["log_history"]))
    assert main(["train", "planner", str(recipe), "--steps", "3"]) == 0
    # once at its steps, a run trains no further: it writes the planner from the checkpoint
    (folder / "run/planner/config.json").unlink()
    assert main(["train", "planner", str(recipe), "--steps", "3"]) == 0
    return folder


def test_a_run_writes_the_planner_the_lora_the_curve_and_the_numbers(run: Path) -> None:
    out = run / "run"
    assert (out / "planner/config.json").is_file()
    assert (out / "adapter/adapter_config.json").is_file()
    assert (out / "curve.png").read_bytes().startswith(b"\x89PNG")
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["heldout_questions"], summary["train_questions"]) == (2, 4)
    for phase in ("before", "after"):
        assert 0 < summary[phase]["mean_plan_tokens"] <= 8
        assert 0 <= summary[phase]["accuracy"] <= 1


def test_a_second_run_resumes_from_the_last_checkpoint(run: Path) -> None:
    state = json.loads((run / "run/checkpoints/checkpoint-3/trainer_state.json").read_text())
    steps = [row["step"] for row in state["log_history"] if "reward" in row]
    assert steps == [1, 2, 3]
    # the first two steps are the first run's, restored, not trained again
    first = json.loads((run / "first-log.json").read_text())
    assert state["log_history"][:2] == first
    assert all("plan_length" in row and "grade" in row for row in first)
    after = json.loads((run / "run/eval-after.json").read_text())
    assert after["stamp"]["step"] == 3
    assert not (run / "run/checkpoints/checkpoint-4").exists()
    assert (run / "run/planner/config.json").is_file()


def test_the_trained_folder_serves_as_a_catalog_s_planner(run: Path) -> None:
    path = catalog(run / "run", run / "run/planner", run / "expander")
    router = build_router(load_catalog(settings_from_env(config=path)), str(path))
    route = router.routes["hawk"]

    async def ask() -> tuple[str, Report]:
        backends = list(route.policy.backends.values())
        for backend in backends:
            await backend.start()
        try:
            events = [e async for e in route.policy.chat(QUESTION, route.params)]
        finally:
            for backend in backends:
                await backend.aclose()
        plan = "".join(e.reasoning or "" for e in events if isinstance(e, Delta))
        return plan, next(e for e in events if isinstance(e, Report))

    plan, report = asyncio.run(ask())
    assert plan
    assert report.extra["plan_tokens"] > 0
    assert report.extra["plan_error"] is None
    assert route.policy.backends["planner"].model_id.endswith("planner")


def test_the_lora_on_the_base_model_is_the_merged_planner(run: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 504, 3200, 30, 17]])
    base = AutoModelForCausalLM.from_pretrained(run / "base")
    plain = base(ids).logits
    with warnings.catch_warnings():
        for message in LIBRARY_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        lora = PeftModel.from_pretrained(base, run / "run/adapter")
    merged = AutoModelForCausalLM.from_pretrained(run / "run/planner")
    with torch.no_grad():
        trained = merged(ids).logits
        # merging adds the LoRA's product to the weights: equal up to float rounding
        assert (lora(ids).logits - trained).abs().max() < 1e-3
        assert (plain - trained).abs().max() > 1e-2
