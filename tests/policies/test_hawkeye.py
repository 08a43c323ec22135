"""The `hawkeye` policy through Tandem on loopback and the official openai SDK: both phases
streamed and whole, the plan cache, each fallback, n, stop, refusals and the contract fields.
Planners are scripted (`hawkeye_fakes`) or the fake OpenAI upstream; the expander is `echo`,
which repeats its prompt, so an answer shows what the expander was given."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI

from gateway.core.config import Settings
from gateway.server.app import create_app
from loadtests.fake_upstream import FakeConfig, FakeUpstream, ServerThread
from tests.policies.hawkeye_fakes import ScriptedBackend
from tests.redis_server import shared_redis, unique_prefix
from tests.servers import closed_port, write_catalog

PIECES = ["<thi", "nk>Add the", " two numbers", "</th", "ink>", " then double."]
PLAN = "Add the two numbers then double."


def openai_backend(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": f"{url}/v1", "model": "fake", **extra}


#: the keys these tests set per request; the policy validates the values
OVERRIDES = ("plan_max_tokens", "plan_temperature", "show_plan", "fallback", "expand_prompt")


def hawkeye(planner: str, expander: str = "echo", **params: Any) -> dict[str, Any]:
    return {
        "policy": "hawkeye",
        "backends": {"planner": planner, "expander": expander},
        "params": params,
        "overrides": {key: {} for key in OVERRIDES},
    }


def catalog(fakes: dict[str, str]) -> dict[str, Any]:
    return {
        "backends": {
            "planner": {"kind": "hawkeye-scripted", "pieces": PIECES},
            "thinker": {
                "kind": "hawkeye-scripted",
                "reasoning": ["Count ", "apples."],
                "pieces": [],
            },
            "broken": {
                "kind": "hawkeye-scripted",
                "pieces": PIECES,
                "fail": "error",
                "fail_after": 2,
            },
            "echo": {"kind": "echo", "prefix": "E:"},
            "http": openai_backend(fakes["http"]),
            "slow": openai_backend(fakes["slow"]),
            "erroring": openai_backend(fakes["erroring"]),
            "recorder": openai_backend(fakes["recorder"]),
            "drip": openai_backend(fakes["drip"]),
            "down": openai_backend(f"http://127.0.0.1:{closed_port()}", connect_timeout=1.0),
        },
        "models": {
            "hk": hawkeye("planner"),
            "hk-global": hawkeye("planner", plan_cache_scope="global"),
            "hk-thinker": hawkeye("thinker"),
            "hk-http": hawkeye("http"),
            "hk-recorded": hawkeye("planner", "recorder"),
            "hk-drip": hawkeye("drip"),
            "hk-down": hawkeye("down"),
            "hk-error": hawkeye("erroring"),
            "hk-partial": hawkeye("broken"),
            "hk-slow": hawkeye("slow", plan_timeout_seconds=0.2),
            "hk-slow-planner": hawkeye("slow", plan_timeout_seconds=0.2, fallback="planner"),
            "hk-down-planner": hawkeye("down", fallback="planner"),
        },
    }


@dataclass
class Fakes:
    upstreams: dict[str, FakeUpstream]
    urls: dict[str, str]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    configs = {
        "http": FakeConfig(chunks=4),
        "slow": FakeConfig(chunks=4, ttft=0.6),
        "erroring": FakeConfig(mode="error", error_status=500),
        "recorder": FakeConfig(chunks=3),
        "drip": FakeConfig(chunks=100, itl=0.05),
    }
    upstreams = {name: FakeUpstream(config) for name, config in configs.items()}
    with ExitStack() as stack:
        servers = {n: stack.enter_context(ServerThread(u.app)) for n, u in upstreams.items()}
        yield Fakes(upstreams, {name: server.url for name, server in servers.items()})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fakes: Fakes) -> Iterator[tuple[str, FastAPI]]:
    path = write_catalog(tmp_path_factory.mktemp("hawkeye"), catalog(fakes.urls))
    app = create_app(Settings(config=path, api_keys=["key-a", "key-b"]))
    with ServerThread(app) as server:
        yield server.url, app


def sdk(url: str, key: str = "key-a") -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@pytest.fixture
def client(served: tuple[str, FastAPI]) -> Iterator[OpenAI]:
    with sdk(served[0]) as c:
        yield c


def planner_of(served: tuple[str, FastAPI], name: str = "planner") -> ScriptedBackend:
    backend = served[1].state.tandem.router.backends[name]
    assert isinstance(backend, ScriptedBackend)
    return backend


def question() -> str:
    """A question no earlier test asked, so its plan is not cached yet."""
    return f"What is 2 + 3 (case {uuid.uuid4().hex[:8]})?"


def ask(client: OpenAI, model: str = "hk", text: str | None = None, **kw: Any) -> Any:
    messages = [{"role": "user", "content": text or question()}]
    return client.chat.completions.create(model=model, messages=messages, **kw)  # type: ignore[call-overload]


def streamed(client: OpenAI, model: str = "hk", **kw: Any) -> list[Any]:
    tandem = {"provenance": True, **kw.pop("tandem", {})}
    return list(
        ask(
            client,
            model,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"tandem": tandem},
            **kw,
        )
    )


def reasoning_of(message_or_delta: Any) -> str | None:
    return (message_or_delta.model_extra or {}).get("reasoning_content")


def test_stream_shows_the_plan_as_reasoning_then_the_answer(client: OpenAI) -> None:
    chunks = streamed(client)
    deltas = [(c.choices[0].delta, c.choices[0].model_extra) for c in chunks if c.choices]
    kinds = [
        "plan" if reasoning_of(d) else "answer" for d, _ in deltas if reasoning_of(d) or d.content
    ]
    assert kinds == sorted(kinds, key=lambda k: k == "answer")  # the whole plan comes first
    assert "".join(reasoning_of(d) or "" for d, _ in deltas) == PLAN
    sources = {extra["tandem"]["source"] for d, extra in deltas if reasoning_of(d) or d.content}
    assert sources == {"plan", "small"}
    answer = "".join(d.content or "" for d, _ in deltas)
    assert answer.startswith("E: Question:")
    assert f"Chain of thought:\n{PLAN}" in answer
    last = chunks[-1]
    tandem = last.model_extra["tandem"]
    assert tandem["plan_tokens"] == len(PIECES)
    assert tandem["tokens"] == {"plan": len(PIECES), "small": tandem["answer_tokens"]}
    assert last.usage.completion_tokens == len(PIECES) + tandem["answer_tokens"]
    assert (tandem["degraded"], tandem["plan_cached"], tandem["fallback"]) == (False, False, None)


def test_whole_response_carries_reasoning_content_and_the_breakdown(client: OpenAI) -> None:
    text = question()
    response = ask(client, text=text)
    message = response.choices[0].message
    assert reasoning_of(message) == PLAN
    assert text in message.content
    assert PLAN in message.content
    tandem = response.model_extra["tandem"]
    assert tandem["policy"] == "hawkeye"
    assert response.usage.completion_tokens == tandem["plan_tokens"] + tandem["answer_tokens"]
    assert tandem["upload_ratio"] == round(len(PIECES) / (len(PIECES) + tandem["answer_tokens"]), 4)
    assert response.choices[0].finish_reason == "stop"


def test_planner_gets_the_whole_conversation_under_its_budget(
    client: OpenAI, served: tuple[str, FastAPI]
) -> None:
    marker = uuid.uuid4().hex
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"I have 3 apples ({marker})."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "And 4 pears: how many fruits?"},
    ]
    response = client.chat.completions.create(
        model="hk",
        messages=messages,
        temperature=0.3,
        seed=11,  # type: ignore[arg-type]
    )
    sent = next(r for r in planner_of(served).requests if marker in r.messages[0].text())
    prompt = sent.messages[0].text()
    assert [m.role for m in sent.messages] == ["user"]
    for line in ("System: Be brief.", "Assistant: Noted.", "User: And 4 pears"):
        assert line in prompt
    assert "Do not repeat the question" in prompt
    assert (sent.max_tokens, sent.temperature, sent.seed) == (256, 0.3, 11)
    assert "User: And 4 pears" in response.choices[0].message.content


def test_plan_budget_per_request(client: OpenAI, served: tuple[str, FastAPI]) -> None:
    response = ask(client, extra_body={"tandem": {"plan_max_tokens": 3, "plan_temperature": 0}})
    sent = planner_of(served).requests[-1]
    assert (sent.max_tokens, sent.temperature) == (3, 0)
    assert reasoning_of(response.choices[0].message) == "Add the two numbers"
    tandem = response.model_extra["tandem"]
    assert (tandem["plan_tokens"], tandem["plan_truncated"]) == (3, True)


def test_hidden_plan_still_guides_the_answer(client: OpenAI) -> None:
    chunks = streamed(client, tandem={"show_plan": False})
    assert not any(reasoning_of(c.choices[0].delta) for c in chunks if c.choices)
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert PLAN in answer
    tandem = chunks[-1].model_extra["tandem"]
    # hidden reasoning is still the completion's: it is counted, as OpenAI counts it
    usage = chunks[-1].usage
    assert usage.completion_tokens == len(PIECES) + tandem["answer_tokens"]
    assert usage.completion_tokens_details.reasoning_tokens == len(PIECES)
    assert (tandem["plan_shown"], tandem["tokens"]["plan"]) == (False, len(PIECES))


def test_a_repeated_question_skips_the_planner(client: OpenAI, served: tuple[str, FastAPI]) -> None:
    planner, text = planner_of(served), question()
    first = ask(client, text=text)
    calls = len(planner.requests)
    second = ask(client, text=f"  {text.replace(' ', '   ')} ")  # the same once normalised
    assert len(planner.requests) == calls
    tandem = second.model_extra["tandem"]
    assert (tandem["plan_cached"], tandem["plan_tokens"], tandem["tokens"]["plan"]) == (
        True,
        len(PIECES),
        0,
    )
    assert reasoning_of(second.choices[0].message) == reasoning_of(first.choices[0].message)
    assert second.usage.completion_tokens == len(PIECES) + tandem["answer_tokens"]
    metrics = httpx.get(f"{served[0]}/metrics").text
    assert 'tandem_cache_requests_total{cache="plan",result="hit"}' in metrics


def test_no_cache_plans_afresh(client: OpenAI, served: tuple[str, FastAPI]) -> None:
    planner, text = planner_of(served), question()
    ask(client, text=text)
    calls = len(planner.requests)
    again = ask(client, text=text, extra_body={"tandem": {"cache": "no-cache"}})
    assert len(planner.requests) == calls + 1
    assert again.model_extra["tandem"]["plan_cached"] is False


def test_plans_are_scoped_per_key_unless_global(served: tuple[str, FastAPI]) -> None:
    text = question()
    with sdk(served[0], "key-a") as a, sdk(served[0], "key-b") as b:
        ask(a, text=text)
        assert ask(b, text=text).model_extra["tandem"]["plan_cached"] is False
        assert ask(a, text=text).model_extra["tandem"]["plan_cached"] is True
        ask(a, "hk-global", text=text)
        assert ask(b, "hk-global", text=text).model_extra["tandem"]["plan_cached"] is True


def test_reasoning_content_of_a_reasoning_planner_is_the_plan(client: OpenAI) -> None:
    response = ask(client, "hk-thinker")
    assert reasoning_of(response.choices[0].message) == "Count apples."
    assert "Chain of thought:\nCount apples." in response.choices[0].message.content


def test_http_planner(client: OpenAI, fakes: Fakes) -> None:
    text = question()
    response = ask(client, "hk-http", text=text)
    assert reasoning_of(response.choices[0].message) == "w0 w1 w2 w3"
    body = next(r.body for r in fakes.upstreams["http"].records if text in str(r.body))
    assert (body["max_tokens"], body["stream"]) == (256, True)
    assert response.model_extra["tandem"]["plan_tokens"] == 4


def test_expander_honours_the_request_fields(client: OpenAI, fakes: Fakes) -> None:
    text = question()
    response = ask(
        client, "hk-recorded", text=text, max_tokens=40, stop=["##"], temperature=0.5, seed=3, n=2
    )
    body = next(r.body for r in fakes.upstreams["recorder"].records if text in str(r.body))
    # the answer gets what the plan left of the budget
    assert (body["max_tokens"], body["stop"], body["temperature"], body["seed"], body["n"]) == (
        40 - len(PIECES),
        ["##"],
        0.5,
        3,
        2,
    )
    [message] = body["messages"]
    assert message["role"] == "user"
    assert PLAN in message["content"]
    assert text in message["content"]
    assert [c.index for c in response.choices] == [0, 1]
    assert all(c.message.content == "w0 w1 w2" for c in response.choices)


@pytest.mark.parametrize(
    ("model", "error", "fallback"),
    [
        ("hk-down", "upstream_unavailable", "expander"),
        ("hk-error", "upstream_bad_response", "expander"),
        ("hk-slow", "plan_timeout", "expander"),
        ("hk-down-planner", "upstream_unavailable", "expander"),
    ],
)
def test_without_a_plan_the_expander_answers_alone(
    client: OpenAI, model: str, error: str, fallback: str
) -> None:
    text = question()
    response = ask(client, model, text=text)
    message = response.choices[0].message
    assert message.content == f"E: {text}"  # the bare question: no plan in its prompt
    assert reasoning_of(message) is None
    tandem = response.model_extra["tandem"]
    assert (tandem["degraded"], tandem["plan_error"], tandem["fallback"]) == (True, error, fallback)
    assert tandem["tokens"] == {"plan": 0, "small": tandem["answer_tokens"]}
    assert response.usage.completion_tokens == tandem["answer_tokens"]


def test_slow_planner_answers_alone_when_configured(client: OpenAI) -> None:
    chunks = streamed(client, "hk-slow-planner")
    answer = [c.choices[0] for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(c.delta.content for c in answer) == "w0 w1 w2 w3"
    assert {c.model_extra["tandem"]["source"] for c in answer} == {"large"}
    tandem = chunks[-1].model_extra["tandem"]
    assert (tandem["degraded"], tandem["fallback"], tandem["plan_error"]) == (
        True,
        "planner",
        "plan_timeout",
    )
    assert tandem["tokens"] == {"plan": 0, "large": 4}
    assert tandem["upload_ratio"] == 1.0


def test_a_plan_cut_short_is_used_and_not_cached(
    client: OpenAI, served: tuple[str, FastAPI]
) -> None:
    text = question()
    first = ask(client, "hk-partial", text=text)
    assert reasoning_of(first.choices[0].message) == "Add the"
    assert "Chain of thought:\nAdd the\n" in first.choices[0].message.content
    tandem = first.model_extra["tandem"]
    assert (tandem["degraded"], tandem["fallback"], tandem["plan_error"]) == (
        True,
        None,
        "upstream_bad_response",
    )
    second = ask(client, "hk-partial", text=text)
    assert second.model_extra["tandem"]["plan_cached"] is False


def test_n_choices_share_one_plan(client: OpenAI, served: tuple[str, FastAPI]) -> None:
    planner = planner_of(served)
    calls = len(planner.requests)
    chunks = streamed(client, n=3)
    assert len(planner.requests) == calls + 1
    for index in range(3):
        mine = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].index == index]
        assert "".join(reasoning_of(d) or "" for d in mine) == PLAN
        assert PLAN in "".join(d.content or "" for d in mine)
    tandem = chunks[-1].model_extra["tandem"]
    assert chunks[-1].usage.completion_tokens == 3 * len(PIECES) + tandem["answer_tokens"]


def test_a_plan_sampled_one_way_is_not_replayed_for_another(
    client: OpenAI, served: tuple[str, FastAPI]
) -> None:
    planner, text = planner_of(served), question()
    ask(client, text=text, temperature=0.8)  # sampled without a seed: no response cache
    calls = len(planner.requests)
    again = ask(client, text=text, temperature=0.8)
    assert again.model_extra["tandem"]["plan_cached"] is True
    others: list[dict[str, Any]] = [
        {"temperature": 0.8, "seed": 2},
        {"temperature": 0.3},
        {"temperature": 0.8, "top_p": 0.5},
    ]
    for other in others:
        response = ask(client, text=text, **other)
        assert response.model_extra["tandem"]["plan_cached"] is False, other
    assert len(planner.requests) == calls + 3


def test_stop_cuts_the_answer_not_the_plan(client: OpenAI) -> None:
    text = question()
    stopped = ask(client, text=text, stop=["Chain"])
    assert stopped.choices[0].message.content == f"E: Question:\n{text}\n\n"
    assert stopped.choices[0].finish_reason == "stop"
    assert reasoning_of(stopped.choices[0].message) == PLAN


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("n", [1, 2])
def test_the_budget_bounds_plan_and_answer_together(
    client: OpenAI, served: tuple[str, FastAPI], field: str, n: int
) -> None:
    text, budget = question(), len(PIECES) + 3
    planner = planner_of(served)
    for cached in (False, True):
        response = ask(client, text=text, n=n, **{field: budget})
        tandem = response.model_extra["tandem"]
        assert tandem["plan_cached"] is cached
        assert planner.requests[-1].max_output_tokens == budget
        for choice in response.choices:
            assert reasoning_of(choice.message) == PLAN
            assert choice.message.content == "E: Question:\nWhat"  # three words: what was left
            assert choice.finish_reason == "length"
        assert response.usage.completion_tokens == n * budget
        assert response.usage.completion_tokens_details.reasoning_tokens == n * len(PIECES)


def test_a_plan_that_spends_the_budget_leaves_no_answer(client: OpenAI) -> None:
    for stream in (False, True):
        if stream:
            chunks = streamed(client, max_tokens=3, n=2)
            finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
            answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            usage = chunks[-1].usage
            assert sorted(f for f in finishes if f) == ["length", "length"]
        else:
            response = ask(client, max_tokens=3, n=2)
            answer = "".join(c.message.content or "" for c in response.choices)
            assert [c.finish_reason for c in response.choices] == ["length", "length"]
            assert reasoning_of(response.choices[0].message) == "Add the two numbers"
            usage = response.usage
        assert answer == ""
        assert (usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens) == (6, 6)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),  # the echo expander cannot
        ({"extra_body": {"tandem": {"plan_max_tokens": 0}}}, "tandem.plan_max_tokens"),
        ({"extra_body": {"tandem": {"fallback": "nobody"}}}, "tandem.fallback"),
        ({"extra_body": {"tandem": {"expand_prompt": "no plan"}}}, "tandem.expand_prompt"),
    ],
)
def test_refusals_name_the_field(
    client: OpenAI, served: tuple[str, FastAPI], extra: dict[str, Any], param: str
) -> None:
    calls = len(planner_of(served).requests)
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, **extra)
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert len(planner_of(served).requests) == calls  # refused before the planner ran


def test_legacy_completions_are_refused(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="hk", prompt="2 + 3?")
    assert caught.value.code == "unsupported_endpoint"


def test_a_client_that_leaves_mid_plan_stops_the_planner(client: OpenAI, fakes: Fakes) -> None:
    text = question()
    with ask(client, "hk-drip", text=text, stream=True) as stream:
        first = next(c for c in stream if c.choices and reasoning_of(c.choices[0].delta))
        assert reasoning_of(first.choices[0].delta) == "w0"
    record = next(r for r in fakes.upstreams["drip"].records if text in str(r.body))
    record.wait_ended()
    assert record.disconnected  # the plan's 100 chunks (5 s) were not waited for


def test_replicas_on_one_redis_share_plans(tmp_path: Path) -> None:
    spec = {
        "backends": {
            "planner": {"kind": "hawkeye-scripted", "pieces": PIECES},
            "echo": {"kind": "echo", "prefix": "E:"},
        },
        "models": {"hk": hawkeye("planner")},
    }
    path = write_catalog(tmp_path, spec)
    text = question()
    with shared_redis() as url, ExitStack() as stack:
        settings = Settings(config=path, redis_url=url, redis_prefix=unique_prefix())
        apps = [create_app(settings) for _ in range(2)]
        urls = [stack.enter_context(ServerThread(app)).url for app in apps]
        with sdk(urls[0]) as first, sdk(urls[1]) as second:
            assert ask(first, text=text).model_extra["tandem"]["plan_cached"] is False
            again = ask(second, text=text)
    assert again.model_extra["tandem"]["plan_cached"] is True
    assert reasoning_of(again.choices[0].message) == PLAN
    planners = [app.state.tandem.router.backends["planner"] for app in apps]
    assert [len(p.requests) for p in planners] == [1, 0]
