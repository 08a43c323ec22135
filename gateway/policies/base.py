"""The policy contract: one request in, an async stream of typed events out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.backends.base import Backend
from gateway.core.config import error_key
from gateway.core.errors import InvalidRequest
from gateway.core.events import EventStream
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest

if TYPE_CHECKING:  # numpy: only catalogs with routers import it
    from gateway.policies.router_spec import Router

RoleNeed = Literal["essential", "optional"]


class PolicyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: parameters read once, from the catalog, when the alias is built: no request changes them
    fixed: ClassVar[frozenset[str]] = frozenset()


class ParamError(ValueError):
    """A policy parameter that cannot be used; `key` is its name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class Policy(ABC):
    """Turns requests into events using the alias's backends, keyed by role; `routers` are the
    catalog's learned-trigger routers by name, loaded once at start-up (the only routers a
    parameter may name)."""

    name: ClassVar[str]
    Params: ClassVar[type[PolicyParams]] = PolicyParams

    def __init__(
        self,
        alias: str,
        backends: Mapping[str, Backend],
        routers: Mapping[str, Router] | None = None,
    ) -> None:
        self.alias = alias
        self.backends = dict(backends)
        self.routers = dict(routers or {})

    def request_base(self, base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The alias's parameters that a request's overrides are laid over."""
        return dict(base)

    def parse_params(self, raw: Mapping[str, Any]) -> PolicyParams:
        """Validate parameters against `Params`, then against the backends this alias has."""
        try:
            params = self.Params.model_validate(dict(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ParamError(error_key(first["loc"]), first["msg"]) from None
        self.check_params(params)
        return params

    def check_params(self, params: PolicyParams) -> None:
        """Raise `ParamError` when valid parameters do not fit this alias's backends."""

    def checks_started(self, params: PolicyParams) -> bool:
        """Whether `check_started` has anything to check for these parameters."""
        return False

    async def check_started(self, params: PolicyParams) -> None:
        """Raise `ParamError` when the started backends cannot serve these parameters (a fact
        known only once the models are loaded, such as a router's pair of tokenizers)."""

    def role_needs(self, params: PolicyParams) -> dict[str, RoleNeed]:
        """What each role the alias uses is to it: `essential` (no answer without it) or
        `optional` (without it the answer is degraded). Roles it does not use are left out."""
        return dict.fromkeys(self.backends, "essential")

    def backend(self, role: str, key: str = "role") -> Backend:
        try:
            return self.backends[role]
        except KeyError:
            roles = ", ".join(sorted(self.backends))
            raise ParamError(key, f"no backend plays the role '{role}' (roles: {roles})") from None

    @abstractmethod
    def chat(self, request: ChatCompletionRequest, params: Any) -> EventStream:
        """Events for one chat completion. Raise `TandemError`s before the first event when
        the request cannot be served; they become HTTP errors."""

    @abstractmethod
    def complete(self, request: CompletionRequest, params: Any) -> EventStream:
        """Events for one legacy completion."""


def check_content_types(request: ChatCompletionRequest, backend: Backend) -> None:
    """Refuse message parts (images, audio, ...) the backend cannot take."""
    for i, message in enumerate(request.messages):
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if part.type not in backend.content_types:
                    raise InvalidRequest(
                        f"content parts of type '{part.type}' are not supported by this model",
                        param=f"messages[{i}].content[{j}]",
                        code="unsupported_content_type",
                    )
