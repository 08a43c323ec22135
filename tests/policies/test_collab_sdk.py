"""The OpenAI contract of a `collab` alias, through Tandem on loopback and the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from gateway.core.config import Settings
from gateway.server.app import create_app
from loadtests.fake_upstream import ServerThread
from tests.policies.conftest import QUESTION
from tests.servers import closed_port, write_catalog

SOMETIMES = {"trigger": "entropy", "threshold": 4.5}
#: what these aliases let a request change; `span` is capped below the policy's own 32
TUNABLE = {"trigger": {}, "threshold": {"min": 0, "max": 10}, "span": {"min": 1, "max": 16}}


@pytest.fixture(scope="module")
def collab_url(
    tiny_folders: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    small, large = tiny_folders
    down = f"http://127.0.0.1:{closed_port()}/v1"
    port = closed_port()  # this very server, as the large model's HTTP endpoint
    catalog = {
        "backends": {
            "small": {"kind": "transformers", "model": str(small), "threads": 1},
            "large": {"kind": "transformers", "model": str(large), "threads": 1},
            "down": {"kind": "openai", "base_url": down, "model": "m", "connect_timeout": 1.0},
            "remote": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "model": "large-direct",
            },
        },
        "models": {
            "large-direct": {"policy": "direct", "backends": {"main": "large"}},
            "collab-http": {
                "policy": "collab",
                "backends": {"small": "small", "large": "remote"},
                "params": SOMETIMES,
                "overrides": TUNABLE,
            },
            "collab": {
                "policy": "collab",
                "backends": {"small": "small", "large": "large"},
                "params": SOMETIMES,
                "overrides": TUNABLE,
            },
            "collab-down": {
                "policy": "collab",
                "backends": {"small": "small", "large": "down"},
                "params": SOMETIMES,
                "overrides": TUNABLE,
            },
        },
    }
    path = write_catalog(tmp_path_factory.mktemp("collab-catalog"), catalog)
    with ServerThread(create_app(Settings(config=path)), port=port) as server:
        yield server.url


@pytest.fixture
def sdk(collab_url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{collab_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def ask(sdk: OpenAI, model: str = "collab", **fields: Any) -> Any:
    body: dict[str, Any] = {"max_tokens": 24, "temperature": 0}
    body.update(fields)
    return sdk.chat.completions.create(model=model, messages=QUESTION, **body)  # type: ignore[arg-type]


def tandem(obj: Any) -> dict[str, Any]:
    extension: dict[str, Any] = (obj.model_extra or {})["tandem"]
    return extension


def test_streams_token_by_token_with_provenance_and_the_report(sdk: OpenAI) -> None:
    whole = ask(sdk)
    chunks = list(
        ask(
            sdk,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"tandem": {"provenance": True}},
        )
    )
    deltas = [c for c in chunks if c.choices and c.choices[0].delta.content]
    text = "".join(c.choices[0].delta.content for c in deltas)
    assert text == whole.choices[0].message.content
    assert len(deltas) > 10  # one chunk per token, not one per answer
    sources = [tandem(c.choices[0])["source"] for c in deltas]
    assert set(sources) == {"small", "large"}
    report = tandem(chunks[-1])
    assert report["policy"] == "collab"
    assert report["tokens"] == {"small": report["tokens_small"], "large": report["tokens_large"]}
    assert report["tokens_large"] == report["interventions"] > 0
    assert report["upload_ratio"] == round(report["tokens_large"] / 24, 4)
    assert report["degraded"] is False
    assert chunks[-1].usage.completion_tokens == 24
    assert tandem(whole)["tokens"] == report["tokens"]


def test_per_request_overrides_of_trigger_threshold_and_span(sdk: OpenAI) -> None:
    never = tandem(ask(sdk, extra_body={"tandem": {"trigger": "never"}}))
    assert never["tokens"] == {"small": 24, "large": 0}
    spans = tandem(ask(sdk, extra_body={"tandem": {"trigger": "always", "span": 8}}))
    assert spans["interventions"] == 3
    assert spans["tokens"] == {"small": 0, "large": 24}
    low = tandem(ask(sdk, extra_body={"tandem": {"threshold": 0.1}}))
    assert low["tokens"]["large"] == 24  # every entropy is above 0.1 nats


@pytest.mark.parametrize(
    ("override", "param"), [({"span": 33}, "tandem.span"), ({"trigger": "dice"}, "tandem.trigger")]
)
def test_bad_overrides_are_400s_naming_the_field(
    sdk: OpenAI, override: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(sdk, extra_body={"tandem": override})
    assert caught.value.body["param"] == param  # type: ignore[index]


def test_n_seed_stop_and_max_tokens(sdk: OpenAI) -> None:
    sampled = {"temperature": 1.0, "seed": 11, "max_tokens": 12}
    two = ask(sdk, n=2, **sampled)
    again = ask(sdk, n=2, **sampled)
    texts = [c.message.content for c in two.choices]
    assert texts == [c.message.content for c in again.choices]
    assert texts[0] != texts[1]
    assert two.usage.completion_tokens == 24
    assert {c.finish_reason for c in two.choices} == {"length"}
    greedy = ask(sdk).choices[0].message.content
    stop = greedy[5:8]
    cut = ask(sdk, stop=[stop]).choices[0]
    assert cut.message.content == greedy[: greedy.index(stop)]
    assert cut.finish_reason == "stop"


def test_logprobs_and_tools_are_refused_clearly(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="'logprobs' is not supported by the 'collab'"):
        ask(sdk, logprobs=True)


def test_an_unreachable_large_model_degrades_and_is_counted(sdk: OpenAI, collab_url: str) -> None:
    degraded = ask(sdk, model="collab-down")
    small_only = ask(sdk, extra_body={"tandem": {"trigger": "never"}})
    assert degraded.choices[0].message.content == small_only.choices[0].message.content
    assert tandem(degraded)["degraded"] is True
    metrics = httpx.get(f"{collab_url}/metrics").text
    assert 'tandem_degraded_responses_total{model="collab-down",policy="collab"} 1.0' in metrics
    assert 'tandem_tokens_total{model="collab",source="large"}' in metrics
    assert 'tandem_large_model_call_seconds_count{model="collab"}' in metrics


def test_a_large_model_over_http_token_sessions_writes_the_same(sdk: OpenAI) -> None:
    local = ask(sdk)
    remote = ask(sdk, model="collab-http")
    assert remote.choices[0].message.content == local.choices[0].message.content
    assert tandem(remote)["tokens"] == tandem(local)["tokens"]
    assert tandem(remote)["vocabulary"] == "shared"
    assert tandem(remote)["degraded"] is False
