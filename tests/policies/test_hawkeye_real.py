"""The default catalog's `tandem-hawkeye` for real: Gemma-3-270M plans, SmolLM2-135M expands,
served by Tandem on loopback, on transformers and on llama.cpp. Budgets are tiny: on this CPU a
token costs 50-80 ms on transformers, 15-30 on llama.cpp."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import OpenAI

from gateway.core.config import Settings
from gateway.server.app import create_app
from loadtests.fake_upstream import ServerThread

QUESTION = [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many now?"}]


@pytest.fixture(scope="module", params=["transformers", "llamacpp"])
def default_catalog(request: pytest.FixtureRequest) -> Iterator[OpenAI]:
    """The default catalog with both models on one CPU runtime, as `kind: local` may pick."""
    if request.param == "llamacpp":
        pytest.importorskip("llama_cpp", reason="`make llamacpp` builds and installs llama.cpp")
    kind = {"kind": request.param}
    settings = Settings(backends={"smollm2": kind, "gemma3": kind})
    with (
        ServerThread(create_app(settings)) as server,
        OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client,
    ):
        yield client


def test_real_pair_plans_then_expands_and_reuses_the_plan(default_catalog: OpenAI) -> None:
    budgets = {"tandem": {"plan_max_tokens": 16, "provenance": True}}
    chunks = list(
        default_catalog.chat.completions.create(
            model="tandem-hawkeye",
            messages=QUESTION,  # type: ignore[arg-type]
            max_tokens=32,  # plan and answer together: the plan takes at most 16
            temperature=0,
            stream=True,
            extra_body=budgets,
        )
    )
    deltas = [c.choices[0] for c in chunks if c.choices]
    plan = "".join((d.delta.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    answer = "".join(d.delta.content or "" for d in deltas)
    assert plan.strip()
    assert answer.strip()
    tandem = chunks[-1].model_extra["tandem"]
    assert 0 < tandem["plan_tokens"] <= 16
    assert 0 < tandem["answer_tokens"] <= 32 - tandem["plan_tokens"]
    assert tandem["degraded"] is False
    # another max_tokens, the same plan budget: not the response cache's entry, but the same
    # conversation's plan, and a shorter answer
    again = default_catalog.chat.completions.create(
        model="tandem-hawkeye",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=24,
        temperature=0,
        extra_body=budgets,
    )
    assert again.model_extra["tandem"]["plan_cached"] is True
    assert again.choices[0].message.model_extra["reasoning_content"] == plan
    assert answer.startswith(again.choices[0].message.content)  # greedy: the same words, fewer
