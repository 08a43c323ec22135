"""OpenAI wire models for the requests Tandem accepts.

Every model allows unknown fields: they are kept in `model_extra`, logged by name, and passed
to upstream servers by the policies that can (vLLM's `top_k`, `min_p`, ...). Fields a policy
cannot honour are refused by that policy, never dropped silently.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

#: a bound for parsing; the catalog's `limits.max_stop` is what a model takes (4 by default)
MAX_STOP_SEQUENCES = 64
MAX_CACHE_TTL_SECONDS = 30 * 24 * 3600


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class CacheControl(BaseModel):
    """`tandem.cache`: "no-cache" (answer afresh, store the answer), "no-store" (neither read
    nor store), or `{"ttl": seconds}` (keep this answer that long)."""

    model_config = ConfigDict(frozen=True)
    read: bool = True
    store: bool = True
    ttl: float | None = None


def parse_cache_control(value: Any) -> Any:
    if value is None or isinstance(value, CacheControl):
        return value
    if value == "no-cache":
        return CacheControl(read=False)
    if value == "no-store":
        return CacheControl(read=False, store=False)
    if isinstance(value, dict) and set(value) == {"ttl"}:
        ttl = value["ttl"]
        if (
            isinstance(ttl, int | float)
            and not isinstance(ttl, bool)
            and 0 < ttl <= MAX_CACHE_TTL_SECONDS
        ):
            return CacheControl(ttl=float(ttl))
    raise ValueError(
        f"must be 'no-cache', 'no-store' or {{\"ttl\": seconds}} with 0 < seconds <= "
        f"{MAX_CACHE_TTL_SECONDS}"
    )


class TandemOptions(WireModel):
    """Per-request options in `extra_body={"tandem": {...}}`.

    Besides the fields below, any key is taken as an override of the policy's parameters: the
    alias's catalog entry must declare it (gateway/core/overrides.py), and the policy validates
    its value (otherwise a 400 naming `tandem.<key>`).
    """

    policy: str | None = None
    provenance: bool = False
    cache: Annotated[CacheControl | None, BeforeValidator(parse_cache_control)] = None

    def param_overrides(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StreamOptions(WireModel):
    include_usage: bool = False


class ContentPart(WireModel):
    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_part_has_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a content part of type 'text' needs a 'text' string")
        return self


class ChatMessage(WireModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text: string content, or its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


Stop = str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None


class SamplingFields(WireModel):
    """Fields shared by chat and legacy completions."""

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=128)
    stop: Stop = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)  # int64, as vLLM takes
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    tandem: TandemOptions | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def options(self) -> TandemOptions:
        return self.tandem or TandemOptions()

    def unknown_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @property
    def max_output_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @model_validator(mode="after")
    def _top_logprobs_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("'top_logprobs' requires 'logprobs' to be true")
        return self


TokenIds = list[Annotated[StrictInt, Field(ge=0)]]
Prompt = str | list[str] | TokenIds | list[TokenIds]


class CompletionRequest(SamplingFields):
    """The legacy `/v1/completions` request, with the vLLM extensions token-level work needs."""

    prompt: Prompt
    max_tokens: int | None = Field(default=16, ge=0)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)
    # vLLM extensions, declared so that one Tandem can be another's token-level upstream.
    top_k: int | None = None
    min_p: float | None = Field(default=None, ge=0, le=1)
    min_tokens: int | None = Field(default=None, ge=0)
    prompt_logprobs: int | None = Field(default=None, ge=0, le=20)
    return_tokens_as_token_ids: bool | None = None
    ignore_eos: bool | None = None
    skip_special_tokens: bool | None = None
    include_stop_str_in_output: bool | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, prompt: Prompt) -> Prompt:
        if isinstance(prompt, list) and (
            not prompt or any(isinstance(p, list) and not p for p in prompt)
        ):
            raise ValueError("prompt must not be empty")
        return prompt

    def prompts(self) -> list[str] | list[list[int]]:
        """The prompt as a batch: a list of strings or a list of token-id lists."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(p, int) for p in prompt):
            return [[p for p in prompt if isinstance(p, int)]]
        return [p for p in prompt if not isinstance(p, int)]  # type: ignore[return-value]
