"""Every failure is an OpenAI error envelope with the right status, before or inside a stream."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.servers import UPSTREAM_KEY, Upstream


def chat(model: str = "relay", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return body


def post(url: str, body: Any, path: str = "/v1/chat/completions", **kw: Any) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=10, **kw)


def envelope(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def sse_events(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]


def test_malformed_json_is_400(gateway_url: str) -> None:
    response = httpx.post(
        gateway_url + "/v1/chat/completions",
        content=b'{"model": "relay", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    error = envelope(response)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_json"


def test_a_stream_that_stalls_midway_ends_in_band_with_a_timeout(
    gateway_url: str, upstream: Upstream
) -> None:
    marker = uuid.uuid4().hex
    # chunks 0.2 s apart, so that they arrive after the watch has taken over from aiohttp's timer
    fake = {"mode": "stall_mid", "close_after": 3, "itl": 0.2}
    body = chat(stream=True, user=marker, fake=fake)
    started = time.monotonic()
    response = post(gateway_url, body)
    waited = time.monotonic() - started
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "upstream_timeout"
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2]]
    assert contents == ["", "w0", " w1", " w2"]
    # 0.4 s of chunks, then the catalog's 1 s read timeout, noticed within 1.25 s
    assert 1.4 <= waited < 3.0, waited
    record = upstream.find(marker)
    record.wait_ended()
    assert record.disconnected, "the stalled upstream connection is dropped"


def test_a_slow_but_steady_stream_is_not_cut_by_the_read_timeout(gateway_url: str) -> None:
    # 2.4 s in all, more than the 1 s read timeout, but never 1 s without a chunk
    response = post(gateway_url, chat(stream=True, fake={"itl": 0.6, "chunks": 5}))
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    assert all("error" not in json.loads(e) for e in events[:-1])
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "w0 w1 w2 w3 w4"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content"),
        ({"top_logprobs": 3}, None),
        ({"max_tokens": 0}, "max_tokens"),
        ({"tandem": {"policy": 3}}, "tandem.policy"),
    ],
)
def test_schema_violations_are_400_naming_the_field(
    gateway_url: str, fields: dict[str, Any], param: str | None
) -> None:
    response = post(gateway_url, chat(**fields))
    assert response.status_code == 400
    error = envelope(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert "Traceback" not in error["message"]


def test_missing_model_field_is_400(gateway_url: str) -> None:
    response = post(gateway_url, {"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 400
    assert envelope(response)["param"] == "model"


def test_unknown_model_is_404_listing_aliases(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "echo, pair, relay" in error["message"]


@pytest.mark.parametrize(
    ("override", "param"),
    [
        ({"policy": "nonesuch"}, "tandem.policy"),
        ({"role": "judge"}, "tandem.role"),
        ({"threshold": 0.3}, "tandem.threshold"),
    ],
)
def test_bad_policy_override_is_400(gateway_url: str, override: dict[str, Any], param: str) -> None:
    response = post(gateway_url, chat(tandem=override))
    assert response.status_code == 400
    assert envelope(response)["param"] == param


def test_unsupported_content_part_is_400(gateway_url: str) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}, image]}])
    response = post(gateway_url, body)
    assert response.status_code == 400
    assert envelope(response)["param"] == "messages[0].content[1]"


def test_fields_the_backend_cannot_honour_are_refused(gateway_url: str) -> None:
    response = post(gateway_url, chat("echo", tools=[{"type": "function", "function": {}}]))
    assert response.status_code == 400
    error = envelope(response)
    assert error["param"] == "tools"
    assert error["code"] == "unsupported_field"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.api+json",
        "text/plain",
        "text/x+json",
        None,
    ],
)
def test_only_json_bodies_reach_the_model_routes(
    gateway_url: str, content_type: str | None
) -> None:
    # a page may POST text/plain or a form anywhere without a CORS preflight: those are 415
    json_body = content_type is not None and content_type.startswith("application/")
    headers = {"content-type": content_type} if content_type else {}
    good = json.dumps(chat()).encode()
    for path in ("/v1/chat/completions", "/v1/completions"):
        for raw in (b"[1, 2]", b'{"model": "relay", "messages": 3}', b"{", good):
            response = httpx.post(gateway_url + path, content=raw, headers=headers, timeout=10)
            if not json_body:
                assert response.status_code == 415, (raw, response.text)
                assert envelope(response)["code"] == "unsupported_media_type"
            elif raw != good:
                assert response.status_code == 400, (raw, response.text)
                assert envelope(response)["type"] == "invalid_request_error"
    if json_body:
        assert response.status_code == 400  # `messages` on the legacy route: not its schema
        response = httpx.post(
            gateway_url + "/v1/chat/completions", content=good, headers=headers, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"]


def test_body_over_the_limit_is_413(gateway_url: str) -> None:
    big = chat(messages=[{"role": "user", "content": "x" * (70 * 1024)}])
    response = post(gateway_url, big)
    assert response.status_code == 413
    assert envelope(response)["code"] == "payload_too_large"
    chunked = httpx.post(
        gateway_url + "/v1/chat/completions",
        content=iter([json.dumps(big).encode()]),
        headers={"content-type": "application/json"},
    )
    assert chunked.status_code == 413


def test_unreachable_upstream_is_503_with_retry_after(gateway_url: str) -> None:
    for stream in (False, True):
        response = post(gateway_url, chat("down", stream=stream))
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        error = envelope(response)
        assert error["code"] == "upstream_unavailable"
        assert "127.0.0.1" not in error["message"]
        assert "down" in error["message"]


def test_hanging_upstream_is_504(gateway_url: str) -> None:
    response = post(gateway_url, chat(fake={"mode": "hang"}))
    assert response.status_code == 504
    assert envelope(response)["code"] == "upstream_timeout"


@pytest.mark.parametrize(
    ("shape", "status", "expected"),
    [
        ("openai", 500, 502),
        ("vllm", 500, 502),
        ("text", 500, 502),
        ("text", 501, 502),
        ("openai", 503, 503),
        ("vllm", 400, 400),
        ("openai", 404, 502),
        ("text", 409, 502),
        ("openai", 429, 429),
    ],
)
def test_upstream_error_bodies_are_normalised(
    gateway_url: str, shape: str, status: int, expected: int, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"detail-{uuid.uuid4().hex[:6]}"
    fake = {"mode": "error", "error_status": status, "error_shape": shape, "error_message": secret}
    response = post(gateway_url, chat(fake=fake))
    assert response.status_code == expected
    error = envelope(response)
    if status in (400, 404, 409):
        assert secret in error["message"], "a client error's reason is the client's to read"
    elif status >= 500:
        assert secret not in response.text, "a server error's detail stays in the log"
        assert secret in caplog.text
    assert UPSTREAM_KEY not in response.text


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (503, "inf", "3600"),
        (503, "nan", "5"),
        (503, "1e400", "3600"),
        (429, "inf", "3600"),
        (429, "-5", "1"),
        (503, "Wed, 21 Oct 2015 07:28:00 GMT", "5"),
    ],
)
def test_any_upstream_retry_after_gives_a_sane_header(
    gateway_url: str, status: int, header: str, expected: str
) -> None:
    fake = {"mode": "error", "error_status": status, "retry_after": header}
    response = post(gateway_url, chat(fake=fake))
    assert response.status_code == status, response.text
    assert response.headers["retry-after"] == expected


@pytest.mark.parametrize(
    "choices",
    [
        {"0": {"delta": {"content": "x"}}},
        "abc",
        7,
        [1],
        [{"index": "0", "delta": {"content": "x"}}],
        [{"index": 0, "delta": "x"}],
        [{"index": 0, "delta": {"content": 5}}],
        [{"index": 0, "delta": {"content": ["x"]}}],
        [{"index": 0, "delta": {"reasoning_content": {"a": 1}}}],
        [{"index": 0, "delta": {"tool_calls": {"id": "c"}}}],
        [{"index": 0, "delta": {"tool_calls": [{"function": "f"}]}}],
        [{"index": 0, "delta": {"content": "x"}, "logprobs": [1]}],
        [{"index": 0, "delta": {}, "finish_reason": 3}],
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_malformed_upstream_choices_are_502_never_500(
    gateway_url: str, choices: Any, stream: bool
) -> None:
    fake = {"mode": "bad_choices", "bad_choices": choices}
    response = post(gateway_url, chat(stream=stream, fake=fake))
    assert response.status_code == 502, response.text
    assert envelope(response)["code"] == "upstream_bad_response"


def test_malformed_legacy_choices_are_502(gateway_url: str) -> None:
    for choices in ([{"index": 0, "text": 5}], [{"index": None, "text": "x"}], {"a": 1}):
        fake = {"mode": "bad_choices", "bad_choices": choices}
        body = {"model": "relay", "prompt": "hi", "fake": fake}
        response = post(gateway_url, body, path="/v1/completions")
        assert response.status_code == 502, response.text


def test_upstream_auth_failure_never_leaks_the_key(gateway_url: str) -> None:
    fake = {"mode": "error", "error_status": 401, "error_message": f"bad key {UPSTREAM_KEY}"}
    response = post(gateway_url, chat(fake=fake))
    assert response.status_code == 502
    assert UPSTREAM_KEY not in response.text
    assert "credentials" in envelope(response)["message"]


def test_close_mid_stream_is_an_in_band_error_then_done(gateway_url: str) -> None:
    response = post(gateway_url, chat(stream=True, fake={"mode": "close_mid", "close_after": 2}))
    assert response.status_code == 200
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "upstream_bad_response"
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2]]
    assert contents == ["", "w0", " w1"]


def test_close_mid_stream_without_streaming_is_502(gateway_url: str) -> None:
    response = post(gateway_url, chat(fake={"mode": "close_mid", "close_after": 2}))
    assert response.status_code == 502


@pytest.mark.parametrize(("code", "shown"), [(500, False), (400, True)])
def test_in_band_upstream_error_is_relayed_in_band(
    gateway_url: str, code: int, shown: bool, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"oom-on-node-{uuid.uuid4().hex[:6]}"
    fake = {"mode": "error_in_stream", "close_after": 1, "error_message": secret}
    response = post(gateway_url, chat(stream=True, fake={**fake, "error_status": code}))
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    message = json.loads(events[-2])["error"]["message"]
    assert (secret in message) == shown
    if not shown:
        assert "the model server had an error" in message
        assert secret in caplog.text


def test_unknown_route_is_an_envelope(gateway_url: str) -> None:
    response = httpx.get(gateway_url + "/v1/nothing")
    assert response.status_code == 404
    assert envelope(response)["code"] == "not_found"


def test_non_finite_numbers_are_400_not_a_crash(gateway_url: str) -> None:
    raw = b'{"model": "relay", "messages": [{"role": "user", "content": "x"}], "min_p": NaN}'
    response = httpx.post(
        gateway_url + "/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "NaN" in envelope(response)["message"]
