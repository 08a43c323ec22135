"""How much one request may ask for: its size (messages, characters) and its hard ceilings
(`n`, `max_tokens`, `best_of`, stop strings, `logit_bias` entries).

`RequestLimits` are the process's defaults (Settings `limits`, `TANDEM_LIMITS__<NAME>`); an
alias may set its own in the catalog (`models.<alias>.limits`), each key replacing the default.
A request past one gets a 400 that names the field. The defaults follow OpenAI's own API where
it has one (2,048 messages, 4 stop strings, 300 `logit_bias` entries), and otherwise bound
what one request can make a worker do.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gateway.core.errors import InvalidRequest
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields


class RequestLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_messages: int = Field(
        default=2048, ge=1, description="messages in a chat request (OpenAI's own limit)"
    )
    max_request_chars: int = Field(
        default=1024 * 1024,
        ge=1,
        description="characters of message text or prompts in one request: about 256k tokens, "
        "more than the windows of the models Tandem serves by default",
    )
    max_n: int = Field(default=16, ge=1, description="choices per request (`n`)")
    max_tokens: int = Field(
        default=32768, ge=1, description="`max_tokens` / `max_completion_tokens` a request may ask"
    )
    max_best_of: int = Field(default=16, ge=1, description="`best_of` of a legacy completion")
    max_stop: int = Field(default=4, ge=0, description="stop strings (OpenAI's own limit)")
    max_logit_bias: int = Field(default=300, ge=0, description="entries of `logit_bias`")


class AliasLimits(BaseModel):
    """An alias's own limits (catalog `limits`); an unset key keeps the process default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_messages: int | None = Field(default=None, ge=1)
    max_request_chars: int | None = Field(default=None, ge=1)
    max_n: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_best_of: int | None = Field(default=None, ge=1)
    max_stop: int | None = Field(default=None, ge=0)
    max_logit_bias: int | None = Field(default=None, ge=0)

    def over(self, defaults: RequestLimits) -> RequestLimits:
        return defaults.model_copy(update=self.model_dump(exclude_none=True))


def check_limits(body: SamplingFields, limits: RequestLimits) -> None:
    """Raise a 400 naming the first field past `limits`."""
    _at_most("n", body.n, limits.max_n)
    _at_most("stop", len(body.stop_sequences()), limits.max_stop, "stop strings")
    _at_most("logit_bias", len(body.logit_bias or ()), limits.max_logit_bias, "entries")
    if isinstance(body, ChatCompletionRequest):
        _check_chat(body, limits)
    elif isinstance(body, CompletionRequest):
        _check_completion(body, limits)


def _check_chat(body: ChatCompletionRequest, limits: RequestLimits) -> None:
    _at_most("messages", len(body.messages), limits.max_messages, "messages")
    for name in ("max_tokens", "max_completion_tokens"):
        _at_most(name, getattr(body, name), limits.max_tokens)
    chars = sum(len(m.text()) + len(m.name or "") for m in body.messages)
    _at_most("messages", chars, limits.max_request_chars, "characters")


def _check_completion(body: CompletionRequest, limits: RequestLimits) -> None:
    _at_most("max_tokens", body.max_tokens, limits.max_tokens)
    _at_most("best_of", body.best_of, limits.max_best_of)
    # a token id counts as one character: either way it is a unit of prompt to read
    size = sum(len(p) for p in body.prompts()) + len(body.suffix or "")
    _at_most("prompt", size, limits.max_request_chars, "characters or tokens")


def _at_most(field: str, value: int | None, limit: int, unit: str = "") -> None:
    if value is None or value <= limit:
        return
    size = f"has {value} {unit}" if unit else f"is {value}"
    raise InvalidRequest(
        f"'{field}' {size}; this model takes at most {limit}", param=field, code="limit_exceeded"
    )
