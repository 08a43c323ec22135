"""The official OpenAI SDK against Tandem on loopback, in front of a real fake upstream."""

from __future__ import annotations

import uuid

import pytest
from openai import AsyncOpenAI, OpenAI

from tests.servers import UPSTREAM_KEY, Upstream


def marker() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_non_streaming_chat_relays_the_upstream_answer(client: OpenAI, upstream: Upstream) -> None:
    tag = marker()
    result = client.chat.completions.create(
        model="relay", messages=ask(tag), extra_body={"fake": {"chunks": 3}}
    )
    assert result.model == "relay"
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == "w0 w1 w2"
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (1, 3)
    assert result.usage.total_tokens == 4
    extension = (result.model_extra or {})["tandem"]
    assert extension["policy"] == "direct"
    assert extension["tokens"] == {"main": 3}
    assert extension["degraded"] is False
    sent = upstream.find(tag)
    assert sent.body["model"] == "fake-model"
    assert sent.body["stream"] is True, "upstream is always streamed"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "tandem" not in sent.body


@pytest.mark.parametrize("include_usage", [True, False])
def test_streaming_chat_chunks(client: OpenAI, include_usage: bool) -> None:
    stream = client.chat.completions.create(
        model="relay",
        messages=ask(marker()),
        stream=True,
        stream_options={"include_usage": include_usage},
        extra_body={"fake": {"chunks": 4}},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "w0 w1 w2 w3"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    assert finishes[:-1] == [None] * (len(finishes) - 1)
    usage_chunks = [c for c in chunks if c.usage is not None]
    empty_choice_chunks = [c for c in chunks if not c.choices]
    if include_usage:
        assert len(usage_chunks) == 1
        assert usage_chunks[0] is chunks[-1]
        assert usage_chunks[0].usage is not None
        assert usage_chunks[0].usage.completion_tokens == 4
        assert empty_choice_chunks == usage_chunks
    else:
        assert usage_chunks == []
        assert empty_choice_chunks == []
    assert (chunks[-1].model_extra or {})["tandem"]["tokens"] == {"main": 4}
    assert all(c.model == "relay" and c.id == chunks[0].id for c in chunks)


async def test_async_streaming(async_client: AsyncOpenAI) -> None:
    stream = await async_client.chat.completions.create(
        model="relay", messages=ask(marker()), stream=True, extra_body={"fake": {"chunks": 5}}
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == "w0 w1 w2 w3 w4"


def test_n_choices_each_have_their_index(client: OpenAI) -> None:
    result = client.chat.completions.create(
        model="relay", messages=ask(marker()), n=3, extra_body={"fake": {"chunks": 2}}
    )
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert all(c.message.content == "w0 w1" for c in result.choices)
    stream = client.chat.completions.create(
        model="relay", messages=ask(marker()), n=2, stream=True, extra_body={"fake": {"chunks": 2}}
    )
    texts = {0: "", 1: ""}
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "w0 w1", 1: "w0 w1"}


def test_stop_is_honoured_by_the_echo_model(client: OpenAI) -> None:
    result = client.chat.completions.create(
        model="echo", messages=ask("one two three four"), stop=["three"]
    )
    assert result.choices[0].message.content == "You said: one two "
    assert result.choices[0].finish_reason == "stop"


def test_max_tokens_caps_the_echo_model(client: OpenAI) -> None:
    result = client.chat.completions.create(
        model="echo", messages=ask("one two three four"), max_completion_tokens=3
    )
    assert result.choices[0].message.content == "You said: one"
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 3


def test_openai_fields_and_unknown_fields_reach_the_upstream(
    client: OpenAI, upstream: Upstream
) -> None:
    tag = marker()
    client.chat.completions.create(
        model="relay",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": tag}]},
        ],
        temperature=0.3,
        top_p=0.9,
        seed=7,
        stop=["x", "y"],
        max_tokens=5,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        user="u1",
        response_format={"type": "json_object"},
        extra_body={"top_k": 5, "min_p": 0.1, "tandem": {"provenance": True}},
    )
    body = upstream.find(tag).body
    for key, value in {
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["x", "y"],
        "max_tokens": 5,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "user": "u1",
        "response_format": {"type": "json_object"},
        "top_k": 5,
        "min_p": 0.1,
    }.items():
        assert body[key] == value, key
    assert body["messages"][1]["content"] == [{"type": "text", "text": tag}]
    assert body["stream_options"] == {"include_usage": True}
    assert "tandem" not in body


def test_max_completion_tokens_is_sent_as_max_tokens(client: OpenAI, upstream: Upstream) -> None:
    tag = marker()
    client.chat.completions.create(model="relay", messages=ask(tag), max_completion_tokens=9)
    body = upstream.find(tag).body
    assert body["max_tokens"] == 9
    assert "max_completion_tokens" not in body


def test_tool_calls_are_relayed_and_assembled(client: OpenAI, upstream: Upstream) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    tag = marker()
    result = client.chat.completions.create(
        model="relay",
        messages=ask(tag),
        tools=tools,
        tool_choice="auto",  # type: ignore[arg-type]
        extra_body={"fake": {"mode": "tools"}},
    )
    assert upstream.find(tag).body["tools"] == tools
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    assert calls[0].id == "call_1"
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert calls[0].function.arguments == '{"city": "Paris"}'  # type: ignore[union-attr]
    stream = client.chat.completions.create(
        model="relay",
        messages=ask(marker()),
        tools=tools,  # type: ignore[arg-type]
        stream=True,
        extra_body={"fake": {"mode": "tools"}},
    )
    arguments = ""
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            arguments += call.function.arguments or "" if call.function else ""
    assert arguments == '{"city": "Paris"}'


def test_provenance_tags_each_delta(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="pair",
        messages=ask("a b"),
        stream=True,
        extra_body={"tandem": {"provenance": True}},
    )
    sources = [(c.choices[0].model_extra or {}).get("tandem") for c in stream if c.choices]
    content_sources = [s for s in sources[1:-1]]
    assert content_sources
    assert all(s == {"source": "small"} for s in content_sources)


def test_policy_parameters_can_be_overridden_per_request(
    client: OpenAI, upstream: Upstream
) -> None:
    tag = marker()
    small = client.chat.completions.create(model="pair", messages=ask(tag))
    assert small.choices[0].message.content == f"You said: {tag}"
    assert (small.model_extra or {})["tandem"]["tokens"] == {"small": 3}
    large = client.chat.completions.create(
        model="pair", messages=ask(tag), extra_body={"tandem": {"role": "large"}}
    )
    assert large.choices[0].message.content == "".join(f" w{i}" for i in range(8)).strip()
    assert (large.model_extra or {})["tandem"]["tokens"] == {"large": 8}
    assert upstream.find(tag).body["model"] == "fake-model"


def test_raw_response_headers(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="echo", messages=ask("hi"))
    assert raw.http_response.status_code == 200
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.parse().choices[0].message.content == "You said: hi"
    raw_stream = client.chat.completions.with_raw_response.create(
        model="echo", messages=ask("hi"), stream=True
    )
    assert raw_stream.headers["content-type"].startswith("text/event-stream")
    assert "".join(c.choices[0].delta.content or "" for c in raw_stream.parse() if c.choices) == (
        "You said: hi"
    )


def test_models_lists_the_aliases(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["down", "echo", "pair", "relay"]
    card = client.models.retrieve("pair")
    assert card.object == "model"
    assert (card.model_extra or {})["tandem"]["roles"] == ["large", "small"]
    assert (card.model_extra or {})["tandem"]["overrides"] == {
        "role": {"choices": ["small", "large"]}
    }
    echo = client.models.retrieve("echo")
    assert (echo.model_extra or {})["tandem"]["overrides"] == {}


def test_sse_comments_from_the_upstream_are_skipped(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="relay",
        messages=ask(marker()),
        stream=True,
        extra_body={"fake": {"chunks": 3, "comments": True}},
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "w0 w1 w2"
