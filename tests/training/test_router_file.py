"""Router files: what they hold, and every way a file can be refused before serving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.backends.sessions import Distribution
from gateway.policies.router_spec import Router, RouterError, load_router

PAIR = {"small": "vocab-small", "large": "vocab-large"}


def spec(**changes: Any) -> dict[str, Any]:
    """entropy, 2 top log-probs and a 2-value hidden state: 5 inputs, 3 hidden units."""
    base: dict[str, Any] = {
        "format": "tandem-router",
        "version": 2,
        "inputs": ["entropy", "top_logprobs", "hidden"],
        "top_k": 2,
        "hidden_size": 2,
        "normalisation": {"mean": [1.0, -1.0, -3.0, 0.0, 0.0], "std": [2.0, 1.0, 1.0, 1.0, 4.0]},
        "layers": [
            {"weight": [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 1]], "bias": [0, 0, -1]},
            {"weight": [[2.0, -1.0, 0.5]], "bias": [-0.5]},
        ],
        "threshold": 0.5,
        "pair": PAIR,
        "calibration": [
            {"threshold": 0.2, "upload": 0.8},
            {"threshold": 0.5, "upload": 0.4},
            {"threshold": 0.9, "upload": 0.0},
        ],
    }
    base.update(changes)
    return base


DIST = Distribution([5, 9], [-0.5, -2.0], 2.5, [1.5, -4.0])


def test_features_are_normalised_and_scored_through_the_layers() -> None:
    router = Router(spec())
    x = router.features(DIST)
    assert x.tolist() == [0.75, 0.5, 1.0, 1.5, -1.0]
    hidden = [max(0.0, 0.75), max(0.0, 0.5), max(0.0, 1.5 - 1.0 - 1.0)]
    logit = 2.0 * hidden[0] - 1.0 * hidden[1] + 0.5 * hidden[2] - 0.5
    assert router.score(DIST) == pytest.approx(1 / (1 + 2.718281828459045**-logit))


def test_a_saved_router_reloads_with_identical_scores(tmp_path: Path) -> None:
    router = Router(spec())
    path = tmp_path / "router.json"
    router.save(path)
    again = load_router(path)
    assert again.score(DIST) == router.score(DIST)
    assert again.pair == PAIR
    assert again.calibration == router.calibration
    assert not (tmp_path / "router.json.partial").exists()


def test_an_upload_target_reads_the_calibration_curve() -> None:
    router = Router(spec())
    assert router.threshold_for(0.4) == pytest.approx(0.5)
    assert router.threshold_for(0.6) == pytest.approx(0.35)
    with pytest.raises(RouterError, match="no calibration"):
        Router(spec(calibration=[])).threshold_for(0.1)


def test_another_pair_is_refused() -> None:
    router = Router(spec())
    router.check_pair("vocab-small", "vocab-large")
    with pytest.raises(RouterError, match="trained for another pair"):
        router.check_pair("vocab-small", "vocab-other")


def test_a_small_model_without_the_hidden_state_or_of_another_size_is_refused() -> None:
    router = Router(spec())
    router.check_hidden(2)
    with pytest.raises(RouterError, match="needs the small model's hidden state"):
        router.check_hidden(None)
    with pytest.raises(RouterError, match="hidden state of 2 values; the small model's has 3"):
        router.check_hidden(3)
    Router(spec(inputs=["entropy"], hidden_size=None, normalisation=None, layers=[
        {"weight": [[1.0]], "bias": [0.0]}])).check_hidden(None)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 3}, "not a tandem-router file of version 2"),
        ({"format": "onnx"}, "not a tandem-router file"),
        ({"hidden_size": 3}, "layer 0 takes 5 inputs, not 6"),
        ({"top_k": 4}, "layer 0 takes 5 inputs, not 7"),
        ({"normalisation": {"mean": [0.0], "std": [1.0]}}, "normalisation mean"),
        ({"normalisation": {"mean": [0.0] * 5, "std": [1.0, 0, 1, 1, 1]}}, "std must be positive"),
        ({"layers": [{"weight": [[1, 0, 0, 0, 0]], "bias": [0, 0]}]}, "do not fit together"),
        ({"inputs": ["entropy", "colour"]}, "unknown router inputs"),
    ],
)
def test_inconsistent_files_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RouterError, match=message):
        Router(spec(**changes))


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.99])
def test_a_truncated_or_corrupt_file_is_refused_without_quoting_it(
    tmp_path: Path, cut: float
) -> None:
    text = json.dumps(spec(trained_on={"note": "secret"}))
    path = tmp_path / "router.json"
    path.write_text(text[: int(len(text) * cut)])
    with pytest.raises(RouterError, match="cannot be read as a router") as caught:
        load_router(path)
    assert "secret" not in str(caught.value)
