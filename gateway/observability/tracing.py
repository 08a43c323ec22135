"""OpenTelemetry spans for API calls, following the GenAI semantic conventions.

Optional: the `otel` extra installs the SDK and the OTLP exporter, and spans are recorded only
when an endpoint is set: `TANDEM_OTLP_ENDPOINT`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
/ `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the exporter reads the other `OTEL_EXPORTER_OTLP_*`
variables itself, the resource `OTEL_SERVICE_NAME`), or a tracer is handed to `create_app`, as
tests do.

Each API call is a SERVER span; each call the request makes to an upstream model server (a
relayed answer, a large-model step, a planner call) is a CLIENT span under it, and the upstream
gets its W3C `traceparent`, so a vLLM started with `--otlp-traces-endpoint` joins the trace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from gateway.core.context import RequestFacts

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

# the request's tracer and SERVER span, for the CLIENT spans of its upstream calls; streams run
# in tasks made inside the request, which inherit it
current: ContextVar[tuple[RequestTracer, Span] | None] = ContextVar("tandem_trace", default=None)


def operation(facts: RequestFacts) -> str:
    return "chat" if facts.path.endswith("chat/completions") else "text_completion"


class RequestTracer:
    """One span per API call, opened by the gate and closed when the response is over."""

    def __init__(self, exporter: SpanExporter, *, batch: bool = True) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        # OTEL_SERVICE_NAME, when set, names the service; "tandem" otherwise
        name = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "tandem"}
        self.provider = TracerProvider(resource=Resource.create(name))
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("tandem")

    def start(self, facts: RequestFacts) -> Span:
        from opentelemetry.trace import SpanKind

        span: Span = self.tracer.start_span(operation(facts), kind=SpanKind.SERVER)
        return span

    def finish(self, span: Span, facts: RequestFacts) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.update_name(f"{operation(facts)} {facts.model}")
        for key, value in span_attributes(facts).items():
            if value is not None:
                span.set_attribute(key, value)
        if facts.status >= 500:
            span.set_status(Status(StatusCode.ERROR, facts.error_code or str(facts.status)))
        span.end()

    @contextmanager
    def client_span(
        self, parent: Span, name: str, attributes: dict[str, Any], headers: dict[str, str]
    ) -> Iterator[Span]:
        """A CLIENT span under `parent` for one upstream call; its `traceparent` (and any
        baggage) goes into `headers`. A failed call marks the span as an error."""
        from opentelemetry import trace
        from opentelemetry.propagate import inject
        from opentelemetry.trace import SpanKind, Status, StatusCode

        context = trace.set_span_in_context(parent)
        span = self.tracer.start_span(
            name, context=context, kind=SpanKind.CLIENT, attributes=attributes
        )
        inject(headers, context=trace.set_span_in_context(span, context))
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", getattr(exc, "code", None) or type(exc).__name__)
            raise
        finally:
            span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()


@contextmanager
def upstream_call(
    headers: dict[str, str], operation: str, model: str, server: str
) -> Iterator[None]:
    """Around one call to an upstream model server: a CLIENT span, and `traceparent` in
    `headers`, when the request is traced; nothing at all otherwise."""
    traced = current.get()
    if traced is None:
        yield
        return
    tracer, parent = traced
    attributes = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": model,
        "server.address": server,
    }
    with tracer.client_span(parent, f"{operation} {model}", attributes, headers):
        yield


def span_attributes(facts: RequestFacts) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": operation(facts),
        "gen_ai.system": "tandem",
        "gen_ai.request.model": facts.model,
        "gen_ai.response.model": facts.model,
        "gen_ai.usage.input_tokens": facts.prompt_tokens,
        "gen_ai.usage.output_tokens": facts.completion_tokens,
        "http.response.status_code": facts.status,
        "error.type": facts.error_code,
        "tandem.request_id": facts.request_id,
        "tandem.policy": facts.policy,
        "tandem.degraded": facts.degraded,
        "tandem.time_to_first_token_s": facts.ttft,
    }


STANDARD_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def tracer_for(endpoint: str | None) -> RequestTracer | None:
    """A tracer exporting over OTLP/HTTP to `endpoint` (TANDEM_OTLP_ENDPOINT), else to the
    standard variables' endpoint; None when neither is set or OTEL_SDK_DISABLED is true."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not endpoint and not any(os.environ.get(name) for name in STANDARD_ENDPOINTS):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # without an endpoint the exporter reads the OTEL_EXPORTER_OTLP_* variables itself
    return RequestTracer(OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter())
