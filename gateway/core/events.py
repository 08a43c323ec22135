"""The closed set of events a policy yields for one request.

A policy turns a request into an async stream of these; `api/sse.py` serialises them to OpenAI
chunks and `api/aggregate.py` folds them into a whole response. The order is: any number of
`Delta`s and `Finish`es (one `Finish` per choice), then one `Usage`, then one `Report`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

Source: TypeAlias = Literal["main", "small", "large", "plan", "cache"]
FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(slots=True)
class Delta:
    """New output for one choice.

    `logprobs` and `tool_calls` are already in the wire shape of the endpoint being served
    (chat: `{"content": [...]}`, legacy completions: `{"tokens": [...], ...}`), so a relay
    passes them on without rebuilding them.
    """

    index: int
    text: str = ""
    source: Source = "main"
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: dict[str, Any] | None = None


@dataclass(slots=True)
class Finish:
    index: int
    reason: str


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    extra: dict[str, Any] | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.extra:
            wire.update(self.extra)
        return wire


@dataclass(slots=True)
class Report:
    """The policy's account of the request: becomes the `tandem` response extension."""

    policy: str
    tokens: dict[str, int] = field(default_factory=dict)
    interventions: int = 0
    degraded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: seconds each call to the large model took; for metrics, not sent to the client
    large_call_seconds: list[float] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        completion = sum(n for source, n in self.tokens.items() if source != "plan")
        large = self.tokens.get("large", 0)
        wire: dict[str, Any] = {
            "policy": self.policy,
            "tokens": dict(self.tokens),
            "interventions": self.interventions,
            "upload_ratio": round(large / completion, 4) if completion else 0.0,
            "degraded": self.degraded,
        }
        wire.update(self.extra)
        return wire


Event: TypeAlias = Delta | Finish | Usage | Report
EventStream: TypeAlias = AsyncGenerator[Event, None]
