"""A non-streaming response is the event stream, consumed: events -> one OpenAI response body."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.api.sse import Envelope
from gateway.core.events import Delta, Event, Finish, Report, Usage


@dataclass
class ChoiceBuilder:
    index: int
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None

    def add(self, delta: Delta) -> None:
        if delta.text:
            self.text.append(delta.text)
        if delta.reasoning:
            self.reasoning.append(delta.reasoning)
        for call in delta.tool_calls or ():
            merge_tool_call(self.tool_calls, call)
        if delta.logprobs:
            self.logprobs = merge_logprobs(self.logprobs, delta.logprobs)

    def chat_choice(self) -> dict[str, Any]:
        text = "".join(self.text)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
            message["content"] = text or None
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        return {
            "index": self.index,
            "message": message,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }

    def completion_choice(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": "".join(self.text),
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


def merge_tool_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    """Fold one streamed tool-call fragment into the call it continues (matched by index)."""
    index = int(delta.get("index", len(calls)))
    call = calls.setdefault(
        index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    if delta.get("type"):
        call["type"] = delta["type"]
    function = delta.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def merge_logprobs(total: dict[str, Any] | None, part: dict[str, Any]) -> dict[str, Any]:
    """Concatenate the list fields of two logprobs objects (chat's or legacy's shape)."""
    if total is None:
        return {
            key: list(value) if isinstance(value, list) else value for key, value in part.items()
        }
    for key, value in part.items():
        if isinstance(value, list) and isinstance(total.get(key), list):
            total[key].extend(value)
        elif value is not None:
            total[key] = list(value) if isinstance(value, list) else value
    return total


class ResponseBuilder:
    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.choices: dict[int, ChoiceBuilder] = {}
        self.usage: Usage | None = None
        self.report: Report | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, Delta):
            self._choice(event.index).add(event)
        elif isinstance(event, Finish):
            self._choice(event.index).finish_reason = event.reason
        elif isinstance(event, Usage):
            self.usage = event
        else:
            self.report = event

    def _choice(self, index: int) -> ChoiceBuilder:
        if index not in self.choices:
            self.choices[index] = ChoiceBuilder(index)
        return self.choices[index]

    def body(self) -> dict[str, Any]:
        ordered = [self.choices[i] for i in sorted(self.choices)]
        if self.envelope.kind == "chat":
            choices = [c.chat_choice() for c in ordered]
        else:
            choices = [c.completion_choice() for c in ordered]
        body = self.envelope.fields(streaming=False)
        body["choices"] = choices
        body["usage"] = (self.usage or Usage(0, 0)).to_wire()
        if self.report is not None:
            body["tandem"] = self.report.to_wire()
        return body
