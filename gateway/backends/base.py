"""The backend contract: one model Tandem can talk to.

A backend streams chat and legacy completions as typed events (`gateway.core.events`), reports its
health, and owns whatever it opened (HTTP pools, loaded weights) until `aclose()`. Backends
that give token-level control add token sessions on top of this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict

from gateway.core.events import EventStream
from gateway.core.plain_chat import DEFAULT_PLAIN_CHAT, PLAIN_CHATS, PlainChat
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest


class ReplicaState(NamedTuple):
    """One replica of a backend that lists several (`gateway/backends/replicas.py`)."""

    url: str  # without credentials
    address: str  # host:port, the metric's label
    up: bool


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Backend(ABC):
    """One model. Subclasses declare their `Config` and register under a kind name."""

    kind: ClassVar[str]
    Config: ClassVar[type[BackendConfig]] = BackendConfig
    #: content-part types a chat message may carry for this backend
    content_types: frozenset[str] = frozenset({"text"})
    #: how a conversation is written for this model when its tokenizer has no chat template
    plain_chat: PlainChat = PLAIN_CHATS[DEFAULT_PLAIN_CHAT]

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        self.config = config

    @property
    def model_id(self) -> str:
        """What identifies the model behind this backend (cache keys, logs)."""
        return self.name

    @property
    def context_window(self) -> int | None:
        """The model's context window in tokens; None when not known (nothing is checked)."""
        return None

    @property
    def max_token_chars(self) -> int | None:
        """Characters of the vocabulary's longest token, for a lower bound of a prompt's
        tokens before it is tokenised (`gateway.core.window`); None when not known."""
        return None

    def replica_states(self) -> list[ReplicaState]:
        """Each replica's last known state, for a backend that spreads calls over several;
        empty otherwise."""
        return []

    async def start(self) -> None:
        """Open clients or load weights; called once in the app's lifespan."""

    async def aclose(self) -> None:
        """Release what `start` opened."""

    @abstractmethod
    async def health(self) -> None:
        """Return if the backend can serve now; raise an `UpstreamError` saying why not."""

    @abstractmethod
    def chat(self, request: ChatCompletionRequest) -> EventStream:
        """Stream one chat completion (all `n` choices) as events."""

    @abstractmethod
    def complete(self, request: CompletionRequest) -> EventStream:
        """Stream one legacy completion (every prompt times `n`) as events."""
