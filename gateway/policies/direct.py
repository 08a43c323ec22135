"""`direct`: one backend, its events relayed as they arrive."""

from __future__ import annotations

from contextlib import aclosing
from typing import cast

from gateway.core.events import Delta, EventStream, Report, Source, Usage
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest
from gateway.policies import register
from gateway.policies.base import Policy, PolicyParams, RoleNeed, check_content_types

ROLE_SOURCES = {"small", "large"}


class DirectParams(PolicyParams):
    role: str = "main"


@register("direct")
class DirectPolicy(Policy):
    name = "direct"
    Params = DirectParams

    def check_params(self, params: PolicyParams) -> None:
        self.backend(cast(DirectParams, params).role)

    def role_needs(self, params: PolicyParams) -> dict[str, RoleNeed]:
        return {cast(DirectParams, params).role: "essential"}

    def chat(self, request: ChatCompletionRequest, params: DirectParams) -> EventStream:
        backend = self.backends[params.role]
        check_content_types(request, backend)
        return self._relay(backend.chat(request), params.role)

    def complete(self, request: CompletionRequest, params: DirectParams) -> EventStream:
        return self._relay(self.backends[params.role].complete(request), params.role)

    async def _relay(self, events: EventStream, role: str) -> EventStream:
        source: Source = cast(Source, role) if role in ROLE_SOURCES else "main"
        async with aclosing(events):
            async for event in events:
                if isinstance(event, Delta):
                    event.source = source
                elif isinstance(event, Usage):
                    yield event
                    yield Report(
                        self.name,
                        tokens={source: event.completion_tokens},
                        extra={"backend": self.backends[role].name},
                    )
                    continue
                yield event
