"""A built-in fake model that needs nothing: it answers with the last user message, word by word.

Deterministic and honest about it: sampling fields change nothing, usage counts words, and what
it cannot do (tools, logprobs, response formats) it refuses.
"""

from __future__ import annotations

import asyncio
import re

from pydantic import Field

from gateway.backends import register
from gateway.backends.base import Backend, BackendConfig
from gateway.core.errors import UnsupportedField
from gateway.core.events import Delta, EventStream, Finish, Usage
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest

WORD = re.compile(r"\s*\S+")
DEFAULT_MAX_TOKENS = 256


class EchoConfig(BackendConfig):
    prefix: str = "You said:"
    delay: float = Field(default=0.0, ge=0, description="seconds between words")


def words(text: str) -> list[str]:
    return WORD.findall(text)


def truncate_at_stop(pieces: list[str], stops: list[str]) -> tuple[list[str], bool]:
    """The pieces up to the first stop sequence (excluded), and whether one was found.

    A stop may begin inside an earlier piece than the one that completes it, so the cut is
    made on the joined text and the pieces are trimmed to it. Only the text a stop completed by
    the next piece could begin in is searched: a long reply costs linear time, not quadratic.
    """
    if not stops:
        return pieces, False
    reach = max(map(len, stops)) - 1  # characters of a stop that may precede the next piece
    text, offset = "", 0  # the searched text, and where it begins in the reply
    for piece in pieces:
        text += piece
        found = [pos for s in stops if (pos := text.find(s)) >= 0]
        if found:
            return _cut(pieces, offset + min(found)), True
        dropped = max(0, len(text) - reach)
        text, offset = text[dropped:], offset + dropped
    return pieces, False


def _cut(pieces: list[str], cut: int) -> list[str]:
    kept: list[str] = []
    length = 0
    for piece in pieces:
        if length >= cut:
            break
        kept.append(piece[: cut - length])
        length += len(kept[-1])
    return kept


@register("echo")
class EchoBackend(Backend):
    kind = "echo"
    Config = EchoConfig

    def __init__(self, name: str, config: EchoConfig) -> None:
        super().__init__(name, config)
        self.settings = config

    @property
    def model_id(self) -> str:
        return "echo"

    async def health(self) -> None:
        return None

    def chat(self, request: ChatCompletionRequest) -> EventStream:
        for name in ("tools", "logprobs", "response_format"):
            if getattr(request, name):
                raise UnsupportedField(name, f"backend '{self.name}' (a built-in echo model)")
        user = [m.text() for m in request.messages if m.role == "user"]
        reply = f"{self.settings.prefix} {user[-1] if user else ''}".strip()
        prompt = sum(len(words(m.text())) for m in request.messages)
        limit = request.max_output_tokens or DEFAULT_MAX_TOKENS
        return self._answer([reply] * request.n, prompt, limit, request.stop_sequences())

    def complete(self, request: CompletionRequest) -> EventStream:
        if request.logprobs is not None:
            raise UnsupportedField("logprobs", f"backend '{self.name}' (a built-in echo model)")
        texts = [p if isinstance(p, str) else " ".join(map(str, p)) for p in request.prompts()]
        replies = [t for t in texts for _ in range(request.n)]
        prompt = sum(len(words(t)) for t in texts)
        limit = DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
        return self._answer(replies, prompt, limit, request.stop_sequences())

    async def _answer(
        self, replies: list[str], prompt_tokens: int, limit: int, stops: list[str]
    ) -> EventStream:
        completion = 0
        for index, reply in enumerate(replies):
            pieces = words(reply)
            pieces, stopped = truncate_at_stop(pieces, stops)
            capped = len(pieces) > limit
            for piece in pieces[:limit]:
                if self.settings.delay:
                    await asyncio.sleep(self.settings.delay)
                completion += 1
                if piece:
                    yield Delta(index, piece)
            yield Finish(index, "length" if capped and not stopped else "stop")
        yield Usage(prompt_tokens, completion)
