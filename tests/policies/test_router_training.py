"""`tandem router collect|train|calibrate` end to end on a tiny random model with SmolLM2's real
tokenizer, and a copy of it with noise in its weights as the large model: two unrelated random
models disagree on every token, a noisy copy on some (one vocabulary: the large model scores each
answer in one pass)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from gateway.policies.router_spec import load_router
from gateway.server.cli import main
from gateway.training.dataset import read
from gateway.training.features import scores
from gateway.training.train import Recipe, split, train

NOISE = 0.03  # of each weight tensor's spread: about half the positions diverge


def noisy_copy(folder: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for weight in model.parameters():
            weight.add_(torch.randn(weight.shape, generator=generator) * NOISE * weight.std())
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(folder).save_pretrained(out)


WORDS = ["river", "stone", "cloud", "maple", "lantern", "harbour", "meadow", "copper"]


@pytest.fixture(scope="module")
def rows(tiny_folders: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("router")
    small, large = tiny_folders[0], folder / "noisy"
    noisy_copy(small, large)
    catalog = {
        "backends": {
            "small": {"kind": "transformers", "model": str(small), "threads": 1},
            "large": {"kind": "transformers", "model": str(large), "threads": 1},
        },
        "models": {"pair": {"policy": "collab", "backends": {"small": "small", "large": "large"}}},
    }
    (folder / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    prompts = folder / "prompts.jsonl"
    lines = [{"prompt": f"{a} and {b} make", "targets": [b]} for a in WORDS for b in WORDS[:4]]
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = folder / "rows.jsonl"
    argv = ["router", "collect", "--config", str(folder / "catalog.yaml"), "--alias", "pair"]
    argv += ["--prompts", str(prompts), "--max-tokens", "6", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_collect_writes_a_row_per_position_with_the_small_models_features(rows: Path) -> None:
    header, records = read(rows)
    assert len(records) == len(WORDS) * 4
    assert header.pair["small"] == header.pair["large"]  # one tokenizer, two sets of weights
    all_rows = [row for record in records for row in record["rows"]]
    assert len(all_rows) >= len(records)
    assert {len(row["hidden"]) for row in all_rows} == {64}
    assert {len(row["top_logprobs"]) for row in all_rows} == {8}
    assert {row["diverge"] for row in all_rows} == {0, 1}


def test_a_trained_router_reloads_with_identical_scores(rows: Path, tmp_path: Path) -> None:
    header, records = read(rows)
    outcome = train(header, records, Recipe(epochs=40, seed=1))
    path = tmp_path / "router.json"
    outcome.router.save(path)
    again = load_router(path)
    _, held = split(records, 0.2, 1)
    assert np.array_equal(scores(again, held), scores(outcome.router, held))
    assert again.pair == header.pair
    assert again.hidden_size == 64
    assert path.stat().st_size < 1_000_000


def test_calibration_hits_its_upload_target_on_held_out_rows(
    rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    router = tmp_path / "router.json"
    assert main(["router", "train", str(rows), "--out", str(router), "--epochs", "40"]) == 0
    assert main(["router", "calibrate", str(router), str(rows), "--target-upload", "0.3"]) == 0
    calibrated = load_router(router)
    _, records = read(rows)
    every = [row for record in records for row in record["rows"]]
    share = float(np.mean(scores(calibrated, every) > calibrated.threshold))
    assert share == pytest.approx(0.3, abs=0.05)
    assert "sends" in capsys.readouterr().out


def test_bad_input_exits_2_naming_the_problem(
    rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torn = tmp_path / "torn.json"
    torn.write_text('{"format": "tandem-router", "ver')
    assert main(["router", "calibrate", str(torn), str(rows), "--target-upload", "0.1"]) == 2
    assert "cannot be read as a router" in capsys.readouterr().err
    missing = tmp_path / "none.jsonl"
    assert main(["router", "train", str(missing), "--out", str(tmp_path / "r.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
