"""A trained router in the catalog: refused at `tandem check` and at start-up when its models
cannot run it, served when they can, and calibrated per request with `upload_target`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from openai import OpenAI

from gateway.policies.router_spec import load_router
from gateway.server.cli import main
from gateway.training.dataset import read
from gateway.training.train import Recipe, train
from tests.policies.test_router_training import rows  # noqa: F401 - the shared rows fixture
from tests.servers import closed_port, serve_gateway


@pytest.fixture(scope="module")
def router(rows: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    header, records = read(rows)
    path = tmp_path_factory.mktemp("served") / "router.json"
    train(header, records, Recipe(epochs=40, seed=2)).router.save(path)
    return path


def catalog(rows_file: Path, router_file: Path, folder: Path, **params: Any) -> Path:
    """The rows' own catalog, with the router named and the alias using it."""
    spec = yaml.safe_load((rows_file.parent / "catalog.yaml").read_text())
    spec["routers"] = {"tiny": str(router_file)}
    spec["models"]["pair"]["params"] = {"trigger": "learned", "router": "tiny", **params}
    spec["models"]["pair"]["overrides"] = {"upload_target": {"min": 0, "max": 1}}
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def altered(router_file: Path, folder: Path, **changes: Any) -> Path:
    spec = json.loads(router_file.read_text())
    spec.update(changes)
    path = folder / "altered.json"
    path.write_text(json.dumps(spec))
    return path


def test_check_passes_a_router_its_models_can_run(
    rows: Path,  # noqa: F811
    router: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "--config", str(catalog(rows, router, tmp_path))]) == 0
    assert "catalog ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pair": {"small": "vocab-other", "large": "vocab-other"}}, "trained for another pair"),
        ({"hidden_size": 32}, "hidden state of 32 values; the small model's has 64"),
    ],
)
def test_check_refuses_a_router_for_other_models_naming_the_alias(
    rows: Path,  # noqa: F811
    router: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, Any],
    message: str,
) -> None:
    if "hidden_size" in changes:  # keep the file consistent: a first layer for 32 values
        spec = json.loads(router.read_text())
        width = 1 + spec["top_k"] + 32
        spec["layers"][0]["weight"] = [row[:width] for row in spec["layers"][0]["weight"]]
        spec["normalisation"] = {k: v[:width] for k, v in spec["normalisation"].items()}
        router = tmp_path / "narrow.json"
        router.write_text(json.dumps(spec))
    bad = altered(router, tmp_path, **changes)
    assert main(["check", "--config", str(catalog(rows, bad, tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "models.pair.params.router" in err
    assert message in err


def test_serve_refuses_to_start_with_a_router_for_another_pair(
    rows: Path,  # noqa: F811
    router: Path,
    tmp_path: Path,
) -> None:
    bad = altered(router, tmp_path, pair={"small": "vocab-a", "large": "vocab-b"})
    path = catalog(rows, bad, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TANDEM_GC_INTERVAL_SECONDS": "0"},
    )
    assert done.returncode == 2
    assert "models.pair.params.router" in done.stderr
    assert "trained for another pair" in done.stderr
    assert closed_port()  # nothing was left listening: the process is gone


def test_a_request_asks_for_an_upload_share_instead_of_a_threshold(
    rows: Path,  # noqa: F811
    router: Path,
    tmp_path: Path,
) -> None:
    calibrated = load_router(router)
    with serve_gateway(catalog(rows, router, tmp_path)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        answers = {}
        for target in (0.1, 0.9):
            response = client.completions.create(
                model="pair",
                prompt="river and stone make",
                max_tokens=8,
                temperature=0,
                extra_body={"tandem": {"upload_target": target}},
            )
            report = response.model_extra["tandem"]  # type: ignore[index]
            assert report["trigger"] == "learned"
            assert report["threshold"] == pytest.approx(calibrated.threshold_for(target))
            answers[target] = report["tokens"]["large"]
        assert answers[0.9] >= answers[0.1]
