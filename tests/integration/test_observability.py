"""Metrics after real requests, the request id's round trip, the access log line and spans."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.observability.logs import ACCESS_LOGGER
from gateway.observability.tracing import STANDARD_ENDPOINTS, RequestTracer, tracer_for
from gateway.policies.direct import DirectPolicy
from tests.integration.test_auth_health_metrics import sample
from tests.servers import Upstream, serve_gateway, write_catalog


def chat(model: str, text: str, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def line_with(lines: list[str], marker: str) -> str:
    """The access line mentioning `marker`; it is written just after the last byte is sent."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        found = [line for line in lines if marker in line]
        if found:
            assert len(found) == 1
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"no access line mentions {marker}")


@pytest.fixture
def access_lines() -> Iterator[list[str]]:
    handler = Lines()
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def test_request_id_is_returned_and_forwarded(gateway_url: str, upstream: Upstream) -> None:
    tag = uuid.uuid4().hex
    sent = httpx.post(
        gateway_url + "/v1/chat/completions",
        json=chat("relay", tag),
        headers={"x-request-id": "client-id-42"},
    )
    assert sent.headers["x-request-id"] == "client-id-42"
    assert upstream.find(tag).headers["x-request-id"] == "client-id-42"
    generated = httpx.post(gateway_url + "/v1/chat/completions", json=chat("echo", "x"))
    assert len(generated.headers["x-request-id"]) == 32
    hostile = httpx.post(
        gateway_url + "/v1/chat/completions",
        json=chat("echo", "x"),
        headers={"x-request-id": "a b\tc"},
    )
    assert hostile.headers["x-request-id"] != "a b\tc"
    streamed = httpx.post(
        gateway_url + "/v1/chat/completions",
        json=chat("echo", "x", stream=True),
        headers={"x-request-id": "stream-7"},
    )
    assert streamed.headers["x-request-id"] == "stream-7"
    refused = httpx.post(
        gateway_url + "/v1/chat/completions",
        json=chat("nope", "x"),
        headers={"x-request-id": "err-1"},
    )
    assert refused.headers["x-request-id"] == "err-1"


def test_one_access_line_per_request_without_the_prompt(
    gateway_url: str, access_lines: list[str]
) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    httpx.post(
        gateway_url + "/v1/chat/completions",
        json=chat("relay", secret, stream=True, fake={"chunks": 3, "ttft": 0.02}),
        headers={"x-request-id": "log-1", "authorization": "Bearer sk-hidden"},
    )
    line = line_with(access_lines, '"log-1"')
    entry = json.loads(line)
    assert entry["event"] == "request"
    assert entry["model"] == "relay"
    assert entry["policy"] == "direct"
    assert entry["status"] == 200
    assert entry["stream"] is True
    assert entry["ttft_ms"] >= 20
    assert entry["duration_ms"] >= entry["ttft_ms"]
    assert entry["completion_tokens"] == 3
    assert entry["tokens"] == {"main": 3}
    assert secret not in line
    assert "sk-hidden" not in line
    assert "w0" not in line, "the answer is not logged either"


def test_in_stream_failures_are_logged_with_their_status(
    gateway_url: str, access_lines: list[str]
) -> None:
    httpx.post(
        gateway_url + "/v1/chat/completions",
        json=chat("relay", "x", stream=True, fake={"mode": "close_mid"}),
        headers={"x-request-id": "log-2"},
    )
    entry = json.loads(line_with(access_lines, '"log-2"'))
    assert entry["status"] == 502
    assert entry["error_code"] == "upstream_bad_response"


def test_refusals_before_a_stream_are_logged_with_their_code(
    gateway_url: str, access_lines: list[str]
) -> None:
    url = gateway_url + "/v1/chat/completions"
    httpx.post(url, json=chat("nope", "x"), headers={"x-request-id": "log-3"})
    json_headers = {"x-request-id": "log-4", "content-type": "application/json"}
    httpx.post(url, content=b'{"model": "relay", ', headers=json_headers)
    unknown = json.loads(line_with(access_lines, '"log-3"'))
    assert (unknown["status"], unknown["error_code"]) == (404, "model_not_found")
    unparsed = json.loads(line_with(access_lines, '"log-4"'))
    assert (unparsed["status"], unparsed["error_code"]) == (400, "invalid_json")


def test_metric_names_appear_after_requests(gateway_url: str) -> None:
    httpx.post(
        gateway_url + "/v1/chat/completions",
        json=chat("relay", "x", stream=True, fake={"chunks": 4}),
    )
    httpx.post(gateway_url + "/v1/chat/completions", json=chat("down", "x"))
    text = httpx.get(gateway_url + "/metrics").text
    assert sample(text, "tandem_inter_token_latency_seconds_count", model="relay") >= 3
    assert (
        sample(text, "tandem_upstream_errors_total", backend="down", code="upstream_unavailable")
        >= 1
    )
    assert "tandem_requests_in_flight 0.0" in text
    for name in (
        "tandem_large_model_calls_total",
        "tandem_interventions_total",
        "tandem_degraded_responses_total",
        "tandem_large_model_call_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text
    assert 'model="' in text
    assert "sk-" not in text, "no keys or prompts as label values"


def test_spans_follow_the_genai_conventions(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    catalog = write_catalog(
        tmp_path,
        {
            "backends": {"echo": {"kind": "echo"}},
            "models": {"echo": {"policy": "direct", "backends": {"main": "echo"}}},
        },
    )
    tracer = RequestTracer(exporter, batch=False)
    with serve_gateway(catalog, tracer=tracer) as url:
        httpx.post(
            url + "/v1/chat/completions",
            json=chat("echo", "a b"),
            headers={"x-request-id": "span-1"},
        )
        httpx.get(url + "/healthz")
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["chat echo"]
    attributes = dict(spans[0].attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "echo"
    assert attributes["gen_ai.usage.input_tokens"] == 2
    assert attributes["gen_ai.usage.output_tokens"] == 4
    assert attributes["http.response.status_code"] == 200
    assert attributes["tandem.request_id"] == "span-1"


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/v1/chat/completions", "chat", chat("echo", "x", stream=True)),
        ("/v1/chat/completions", "chat", chat("echo", "x")),
        ("/v1/completions", "complete", {"model": "echo", "prompt": "x"}),
    ],
)
def test_a_bug_in_a_model_route_is_a_stamped_500_envelope(
    gateway_url: str,
    access_lines: list[str],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    method: str,
    body: dict[str, object],
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(DirectPolicy, method, broken)
    rid = f"bug-{uuid.uuid4().hex}"
    response = httpx.post(gateway_url + path, json=body, headers={"x-request-id": rid})
    assert response.status_code == 500
    assert response.json()["error"] == {
        "message": "The server had an error while processing your request.",
        "type": "internal_error",
        "param": None,
        "code": None,
    }
    assert response.headers["x-request-id"] == rid
    assert "a bug" not in response.text
    entry = json.loads(line_with(access_lines, f'"{rid}"'))
    assert (entry["status"], entry["error_code"]) == (500, "internal_error")


def test_unknown_field_names_are_logged_counted_truncated_and_escaped(
    gateway_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    forged = 'x\n{"event":"request","status":200}'
    fields = {forged: 1, "é" * 500: 2, **{f"f{i}": i for i in range(3000)}}
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **fields}
    with caplog.at_level(logging.INFO, logger="gateway.api.chat"):
        assert httpx.post(gateway_url + "/v1/chat/completions", json=body).status_code == 200
    assert not [r for r in caplog.records if r.name == "gateway.api.chat"], "not at info"
    with caplog.at_level(logging.DEBUG, logger="gateway.api.chat"):
        assert httpx.post(gateway_url + "/v1/chat/completions", json=body).status_code == 200
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gateway.api.chat"]
    assert line.startswith("3002 request fields outside the OpenAI schema")
    assert "\n" not in line
    assert "\\n" in line  # the forged name, escaped
    assert line.isascii()
    assert len(line) < 400


def test_each_upstream_call_is_a_client_span_under_the_request_with_its_traceparent(
    tmp_path: Path, upstream: Upstream
) -> None:
    exporter = InMemorySpanExporter()
    relay = {"kind": "openai", "base_url": f"{upstream.url}/v1", "model": "fake-model"}
    catalog = write_catalog(
        tmp_path,
        {
            "backends": {"up": relay, "echo": {"kind": "echo"}},
            "models": {
                "relay": {"policy": "direct", "backends": {"main": "up"}},
                "hk": {"policy": "hawkeye", "backends": {"planner": "up", "expander": "echo"}},
            },
        },
    )
    with serve_gateway(catalog, tracer=RequestTracer(exporter, batch=False)) as url:
        for model, stream in (("relay", True), ("relay", False), ("hk", False)):
            marker = f"traced-{model}-{stream}"
            response = httpx.post(
                url + "/v1/chat/completions", json=chat(model, marker, stream=stream)
            )
            assert response.status_code == 200
            sent = upstream.find(marker).headers
            server, client = by_kind(exporter, marker=model)
            assert client.parent is not None
            assert client.parent.span_id == server.context.span_id
            assert client.context.trace_id == server.context.trace_id
            _version, trace_id, span_id, _ = sent["traceparent"].split("-")
            assert (int(trace_id, 16), int(span_id, 16)) == (
                client.context.trace_id,
                client.context.span_id,
            ), "the upstream continues the client span"
            assert dict(client.attributes or {})["gen_ai.request.model"] == "fake-model"
            exporter.clear()


def by_kind(exporter: InMemorySpanExporter, marker: str) -> tuple[Any, Any]:
    """The request's SERVER span (named after the alias) and its one CLIENT span. The SERVER
    span ends just after the last byte is sent, which the client may read first: wait for it."""
    from opentelemetry.trace import SpanKind

    deadline = time.monotonic() + 2
    while True:
        spans = exporter.get_finished_spans()
        servers = [s for s in spans if s.kind == SpanKind.SERVER and s.name.endswith(marker)]
        if servers or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    clients = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert len(servers) == 1
    assert len(clients) == 1, [s.name for s in clients]
    return servers[0], clients[0]


def test_an_untraced_gateway_sends_no_traceparent(gateway_url: str, upstream: Upstream) -> None:
    response = httpx.post(gateway_url + "/v1/chat/completions", json=chat("relay", "untraced-1"))
    assert response.status_code == 200
    assert "traceparent" not in upstream.find("untraced-1").headers


def test_the_standard_otel_variables_turn_tracing_on_and_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("TANDEM_OTLP_ENDPOINT", *STANDARD_ENDPOINTS, "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert tracer_for(None) is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-gateway")
    tracer = tracer_for(None)
    assert tracer is not None
    assert tracer.provider.resource.attributes["service.name"] == "edge-gateway"
    tracer.shutdown()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracer_for("http://127.0.0.1:1/v1/traces") is None
