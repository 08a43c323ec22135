"""OpenTelemetry spans for API calls, following the GenAI semantic conventions.

Optional: the `otel` extra installs the SDK and the OTLP exporter, and a span is recorded only
when `TANDEM_OTLP_ENDPOINT` is set (or a tracer is handed to `create_app`, as tests do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.core.context import RequestFacts

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span


def operation(facts: RequestFacts) -> str:
    return "chat" if facts.path.endswith("chat/completions") else "text_completion"


class RequestTracer:
    """One span per API call, opened by the gate and closed when the response is over."""

    def __init__(self, exporter: SpanExporter, *, batch: bool = True) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        self.provider = TracerProvider(resource=Resource.create({"service.name": "tandem"}))
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

    def shutdown(self) -> None:
        self.provider.shutdown()


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


def tracer_for(endpoint: str | None) -> RequestTracer | None:
    """A tracer exporting over OTLP/HTTP to `endpoint`, or None when tracing is off."""
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return RequestTracer(OTLPSpanExporter(endpoint=endpoint))
