"""The planner as the `hawkeye` policy serves it: its prompt, where a plan ends, and the answer
the expander writes from a plan. Training and evaluation both go through here, so a trained
planner is served exactly as it was trained and scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.backends.base import Backend
from gateway.core.events import Delta, EventStream, Finish, Report, Usage
from gateway.core.plain_chat import DEFAULT_PLAIN_CHAT, PLAIN_CHATS, PlainChat
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest
from gateway.core.tokens import chat_prompt, has_chat_template
from gateway.policies.hawkeye import HawkeyeParams, HawkeyePolicy, planner_request


def question_request(text: str, params: HawkeyeParams, answer_tokens: int) -> ChatCompletionRequest:
    """A client's request for one question, greedy: the plan's budget plus the answer's, as a
    client asks who wants an answer of `answer_tokens` after a full plan."""
    return ChatCompletionRequest.model_validate(
        {
            "model": "planner-training",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": params.plan_max_tokens + answer_tokens,
            "temperature": 0,
        }
    )


def plan_prompt(
    tokenizer: Any,
    text: str,
    params: HawkeyeParams,
    plain: PlainChat = PLAIN_CHATS[DEFAULT_PLAIN_CHAT],
) -> str | list[dict[str, str]]:
    """The planner's prompt for a question, in TRL's form: the chat turns when the tokenizer
    has a template (TRL renders them as the backend does, with the generation prompt), else the
    conversation as the backend's `plain_chat` writes it, as text (both add the tokenizer's
    special tokens)."""
    request = planner_request(question_request(text, params, 1), params)
    if has_chat_template(tokenizer):
        return [{"role": m.role, "content": m.text()} for m in request.messages]
    return chat_prompt(tokenizer, request.messages, plain)


def served_plan(
    text: str, templated: bool, plain: PlainChat = PLAIN_CHATS[DEFAULT_PLAIN_CHAT]
) -> str:
    """A sampled plan cut where the backend would have stopped it: a base model's plain
    rendering ends where its next turn starts."""
    if templated:
        return text
    ends = [i for stop in plain.stops if (i := text.find(stop)) >= 0]
    return text[: min(ends)] if ends else text


class Replayed(Backend):
    """A planner that streams a plan already written (a sampled completion), so that the
    policy's own code turns it into the expander's request."""

    kind = "replayed"

    def __init__(self, plan: str, tokens: int) -> None:
        super().__init__("replayed", None)
        self.plan, self.tokens = plan, tokens

    async def health(self) -> None:
        return None

    def chat(self, request: ChatCompletionRequest) -> EventStream:
        return self._stream()

    def complete(self, request: CompletionRequest) -> EventStream:
        raise NotImplementedError("a replayed plan is a chat completion")

    async def _stream(self) -> EventStream:
        if self.plan:
            yield Delta(0, self.plan)
        yield Finish(0, "stop")
        yield Usage(0, self.tokens)


@dataclass(frozen=True)
class Answer:
    plan: str
    plan_tokens: int
    text: str


async def hawkeye_answer(
    planner: Backend, expander: Backend, question: str, params: HawkeyeParams, answer_tokens: int
) -> Answer:
    """One question through the `hawkeye` policy: the plan (as the expander got it) and the
    answer."""
    policy = HawkeyePolicy("planner-training", {"planner": planner, "expander": expander})
    unsaved = params.model_copy(
        update={"plan_cache": False, "plan_temperature": 0.0, "show_plan": True}
    )
    plan: list[str] = []
    answer: list[str] = []
    tokens = 0
    async for event in policy.chat(question_request(question, params, answer_tokens), unsaved):
        if isinstance(event, Delta):
            plan.append(event.reasoning or "")
            answer.append(event.text)
        elif isinstance(event, Report):
            tokens = int(event.extra["plan_tokens"])
    return Answer("".join(plan), tokens, "".join(answer))
