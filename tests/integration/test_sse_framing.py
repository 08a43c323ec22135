"""The stream's bytes, exactly: what curl -N shows a user."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.servers import serve_gateway

ID = re.compile(rb'"id":"(chatcmpl|cmpl)-[0-9a-f]{32}","object":"([a-z._]+)","created":\d+')


def normalised(raw: bytes) -> bytes:
    return ID.sub(rb'"id":"ID","object":"\2","created":0', raw)


def stream_bytes(url: str, path: str, body: dict[str, object]) -> bytes:
    with httpx.stream("POST", url + path, json=body, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return b"".join(response.iter_raw())


def chunk(choices: str, extra: str = "") -> bytes:
    head = '{"id":"ID","object":"chat.completion.chunk","created":0,"model":"echo","choices":['
    return b"data: " + (head + choices + "]" + extra + "}").encode() + b"\n\n"


def delta(content: str) -> str:
    body = json.dumps({"content": content}, separators=(",", ":"), ensure_ascii=False)
    return '{"index":0,"delta":' + body + ',"logprobs":null,"finish_reason":null}'


def test_chat_stream_bytes_with_usage(gateway_url: str) -> None:
    raw = stream_bytes(
        gateway_url,
        "/v1/chat/completions",
        {
            "model": "echo",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "héllo 世界 🙂"}],
        },
    )
    tandem = (
        ',"tandem":{"policy":"direct","tokens":{"main":5},"interventions":0,'
        '"upload_ratio":0.0,"degraded":false,"backend":"echo","cache":"bypass"}'
    )
    expected = b"".join(
        [
            chunk(
                '{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
                '"finish_reason":null}'
            ),
            chunk(delta("You")),
            chunk(delta(" said:")),
            chunk(delta(" héllo")),
            chunk(delta(" 世界")),
            chunk(delta(" 🙂")),
            chunk('{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}'),
            chunk(
                "", ',"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}' + tandem
            ),
            b"data: [DONE]\n\n",
        ]
    )
    assert normalised(raw) == expected


def test_chat_stream_without_usage_puts_the_extension_on_the_finish_chunk(
    gateway_url: str,
) -> None:
    raw = stream_bytes(
        gateway_url,
        "/v1/chat/completions",
        {
            "model": "echo",
            "stream": True,
            "messages": [{"role": "user", "content": "a"}],
        },
    )
    frames = normalised(raw).split(b"\n\n")
    assert frames[-3:] == [
        chunk(
            '{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}',
            ',"tandem":{"policy":"direct","tokens":{"main":3},"interventions":0,'
            '"upload_ratio":0.0,"degraded":false,"backend":"echo","cache":"bypass"}',
        )[:-2],
        b"data: [DONE]",
        b"",
    ]
    assert b'"usage"' not in raw


def test_completion_stream_bytes(gateway_url: str) -> None:
    raw = stream_bytes(
        gateway_url,
        "/v1/completions",
        {"model": "echo", "prompt": "x y", "stream": True, "max_tokens": 1},
    )
    head = '{"id":"ID","object":"text_completion","created":0,"model":"echo","choices":['
    assert normalised(raw) == b"".join(
        [
            b"data: "
            + (head + '{"index":0,"text":"x","logprobs":null,"finish_reason":null}]}').encode()
            + b"\n\n",
            b"data: "
            + (
                head + '{"index":0,"text":"","logprobs":null,"finish_reason":"length"}]'
                ',"tandem":{"policy":"direct","tokens":{"main":1},"interventions":0,'
                '"upload_ratio":0.0,"degraded":false,"backend":"echo","cache":"bypass"}}'
            ).encode()
            + b"\n\n",
            b"data: [DONE]\n\n",
        ]
    )


def test_an_idle_stream_is_kept_alive_with_comments(catalog_dir: Path) -> None:
    with serve_gateway(catalog_dir / "catalog.yaml", sse_ping_seconds=0.1) as url:
        raw = stream_bytes(
            url,
            "/v1/chat/completions",
            {
                "model": "relay",
                "stream": True,
                "messages": [{"role": "user", "content": "a"}],
                "fake": {"itl": 0.5, "chunks": 2},
            },
        )
    frames = raw.split(b"\n\n")
    pause = frames.index(b": ping")
    assert b'"content":"w0"' in frames[pause - 1], "pings fill the silence between tokens"
    assert b'"content":" w1"' in frames[pause + frames[pause:].count(b": ping")]
    data = [f for f in frames if f.startswith(b"data: ")]
    assert data[-1] == b"data: [DONE]"
