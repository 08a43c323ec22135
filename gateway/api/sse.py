"""The one serialiser: events -> OpenAI stream chunks as SSE bytes.

Every chunk shares its envelope (`id`, `object`, `created`, `model`), so the envelope is
rendered once per request and each event costs one small `orjson.dumps`. The finish or usage
chunk that closes the stream is held back until the policy's `Report` arrives, so the `tandem`
extension rides on the last chunk without adding a chunk with empty `choices` that the client
did not ask for.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.core.errors import TandemError, internal_error
from gateway.core.events import Delta, Event, EventStream, Finish, Usage

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
Kind = Literal["chat", "completion"]


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every response of one request shares."""

    kind: Kind
    id: str
    created: int
    model: str

    def fields(self, streaming: bool) -> dict[str, Any]:
        if self.kind == "chat":
            obj = "chat.completion.chunk" if streaming else "chat.completion"
        else:
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}


class ChunkWriter:
    def __init__(self, envelope: Envelope, include_usage: bool, provenance: bool) -> None:
        self.kind = envelope.kind
        head = dumps(envelope.fields(streaming=True))
        self._prefix = b"data: " + head[:-1] + b',"choices":['
        self._include_usage = include_usage
        self._provenance = provenance
        self._held: tuple[bytes, bytes] | None = None  # (choices json, extra top-level json)

    def opening(self, n: int) -> bytes:
        """Chat streams open with the assistant role, one chunk per choice."""
        if self.kind != "chat":
            return b""
        return b"".join(
            self._chunk(
                dumps(
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                )
            )
            for i in range(n)
        )

    def write(self, event: Event) -> bytes:
        if isinstance(event, Delta):
            return self._release() + self._chunk(dumps(self._delta_choice(event)))
        if isinstance(event, Finish):
            out = self._release()
            self._held = (dumps(self._finish_choice(event)), b"")
            return out
        if isinstance(event, Usage):
            if not self._include_usage:
                return b""
            out = self._release()
            self._held = (b"", b',"usage":' + dumps(event.to_wire()))
            return out
        return self._release(extra=b',"tandem":' + dumps(event.to_wire()))

    def close(self) -> bytes:
        return self._release() + DONE

    def error(self, exc: TandemError) -> bytes:
        return self._release() + frame(dumps(exc.body())) + DONE

    def _chunk(self, choices: bytes, extra: bytes = b"") -> bytes:
        return self._prefix + choices + b"]" + extra + b"}\n\n"

    def _release(self, extra: bytes = b"") -> bytes:
        if self._held is None:
            return b""
        choices, held_extra = self._held
        self._held = None
        return self._chunk(choices, held_extra + extra)

    def _delta_choice(self, event: Delta) -> dict[str, Any]:
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if event.text or not (event.reasoning or event.tool_calls):
                delta["content"] = event.text
            if event.reasoning:
                delta["reasoning_content"] = event.reasoning
            if event.tool_calls:
                delta["tool_calls"] = event.tool_calls
            choice = {
                "index": event.index,
                "delta": delta,
                "logprobs": event.logprobs,
                "finish_reason": None,
            }
        else:
            choice = {
                "index": event.index,
                "text": event.text,
                "logprobs": event.logprobs,
                "finish_reason": None,
            }
        if self._provenance:
            choice["tandem"] = {"source": event.source}
        return choice

    def _finish_choice(self, event: Finish) -> dict[str, Any]:
        if self.kind == "chat":
            return {
                "index": event.index,
                "delta": {},
                "logprobs": None,
                "finish_reason": event.reason,
            }
        return {"index": event.index, "text": "", "logprobs": None, "finish_reason": event.reason}


async def sse_stream(
    writer: ChunkWriter, n: int, first: Event, rest: EventStream
) -> AsyncGenerator[bytes, None]:
    """SSE bytes for a stream whose first event was already pulled (errors before it were
    HTTP errors); an error after that is an in-band error event, then `[DONE]`."""
    try:
        yield writer.opening(n) + writer.write(first)
        async for event in rest:
            data = writer.write(event)
            if data:
                yield data
    except TandemError as exc:
        yield writer.error(exc)
        return
    except Exception:
        log.exception("stream failed after it started")
        yield writer.error(internal_error())
        return
    finally:
        await rest.aclose()
    yield writer.close()
