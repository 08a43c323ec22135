"""`tandem train planner` as a command: what it refuses before any model loads, and that the
gateway and the command's modules load none of the training libraries until it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.server.cli import main

HEAVY = ("torch", "transformers", "trl", "peft", "matplotlib", "datasets")


def test_training_libraries_load_only_when_the_command_runs() -> None:
    code = (
        "import sys, gateway.server.cli, gateway.training.planner.run, "
        "gateway.training.planner.reward, gateway.training.planner.evaluate\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("recipe", "says"),
    [
        ("tasks: [bigbench:no_such_task]\n", "no BIG-bench task 'no_such_task'"),
        ("tasks: [questions.jsonl]\n", "planner tasks are BIG-bench tasks"),
        ("tasks: [bigbench:arithmetic/1_digit_addition]\nalias: echo\n", "not a hawkeye alias"),
        ("tasks: [bigbench:arithmetic/1_digit_addition]\ngrpo: {generations: 1}\n", "generations"),
        ("- a list\n", "a recipe is a mapping"),
    ],
)
def test_a_bad_recipe_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recipe: str, says: str
) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    assert main(["train", "planner", str(path), "--out", str(tmp_path / "run")]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
