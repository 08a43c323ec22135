"""A planner whose stream a test scripts: kind `hawkeye-scripted`, registered for the tests only.

It streams `reasoning` pieces as `reasoning_content`, then `pieces` as content, then usage
(one token per piece), and records every request it was sent. `fail` makes it refuse
(`unavailable`) or break (`error`) after `fail_after` pieces; `delay` sleeps before each piece.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field

from gateway.backends import register
from gateway.backends.base import Backend, BackendConfig
from gateway.core.errors import UpstreamBadResponse, UpstreamUnavailable
from gateway.core.events import Delta, EventStream, Finish, Usage
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest


class ScriptedConfig(BackendConfig):
    reasoning: list[str] = Field(default_factory=list)
    pieces: list[str] = Field(default_factory=list)
    delay: float = 0.0
    fail: Literal["none", "error", "unavailable"] = "none"
    fail_after: int = 0


@register("hawkeye-scripted")
class ScriptedBackend(Backend):
    kind = "hawkeye-scripted"
    Config = ScriptedConfig

    def __init__(self, name: str, config: ScriptedConfig) -> None:
        super().__init__(name, config)
        self.script = config
        self.requests: list[ChatCompletionRequest] = []

    @property
    def model_id(self) -> str:
        return f"scripted:{self.name}"

    async def health(self) -> None:
        return None

    def chat(self, request: ChatCompletionRequest) -> EventStream:
        return self._stream(request)

    def complete(self, request: CompletionRequest) -> EventStream:
        raise NotImplementedError

    async def _stream(self, request: ChatCompletionRequest) -> EventStream:
        # recorded once run: the policy also builds requests it drops unstarted, to check them
        self.requests.append(request)
        script = self.script
        if script.fail == "unavailable":
            raise UpstreamUnavailable(f"backend '{self.name}' is down", backend=self.name)
        parts = [(p, True) for p in script.reasoning] + [(p, False) for p in script.pieces]
        limit = request.max_output_tokens or len(parts)
        for sent, (piece, reasoning) in enumerate(parts[:limit]):
            if script.fail == "error" and sent == script.fail_after:
                raise UpstreamBadResponse(f"backend '{self.name}' broke", backend=self.name)
            await asyncio.sleep(script.delay)
            yield Delta(0, "" if reasoning else piece, reasoning=piece if reasoning else None)
        yield Finish(0, "length" if len(parts) > limit else "stop")
        yield Usage(7, min(limit, len(parts)))
