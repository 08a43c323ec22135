"""How a conversation is written for a model without a chat template, and where its reply ends."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.backends.openai_http import OpenAIBackend, OpenAIBackendConfig
from gateway.backends.transformers import TransformersBackend, TransformersConfig
from gateway.core.plain_chat import DEFAULT_PLAIN_CHAT, PLAIN_CHATS
from gateway.core.protocol import ChatMessage
from gateway.core.tokens import StopMatcher, chat_prompt, turn_stops

TWO_TURNS = [("user", "Hi"), ("assistant", "Hello."), ("user", "Who wrote Hamlet?")]
WITH_SYSTEM = [("system", "Be brief."), ("user", "Who wrote Hamlet?")]
FRAME = (
    "The following is a conversation between a user and an AI assistant. The assistant "
    "answers briefly and directly, without repeating the question."
)


class Plain:
    """A tokenizer without a chat template: chat_prompt never calls it."""

    chat_template = None

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        raise AssertionError("a template-less tokenizer was asked for its template")


class Templated(Plain):
    chat_template = "{{ messages }}"

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        return "<template>"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("transcript", "user: Hi\nassistant: Hello.\nuser: Who wrote Hamlet?\nassistant:"),
        (
            "dialogue",
            f"{FRAME}\n\nUser: Hi! Can you help me?\nAssistant: Of course. What do you need?\n"
            "User: Hi\nAssistant: Hello.\nUser: Who wrote Hamlet?\nAssistant:",
        ),
        ("qa", "Question: Hi\nAnswer: Hello.\nQuestion: Who wrote Hamlet?\nAnswer:"),
        (
            "instruct",
            "### Instruction:\nHi\n\n### Response:\nHello.\n\n### Instruction:\n"
            "Who wrote Hamlet?\n\n### Response:\n",
        ),
    ],
)
def test_two_turns_in_each_rendering(name: str, expected: str) -> None:
    assert PLAIN_CHATS[name].render(TWO_TURNS) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("transcript", "system: Be brief.\nuser: Who wrote Hamlet?\nassistant:"),
        ("qa", "Be brief.\n\nQuestion: Who wrote Hamlet?\nAnswer:"),
        ("instruct", "Be brief.\n\n### Instruction:\nWho wrote Hamlet?\n\n### Response:\n"),
    ],
)
def test_a_system_message_opens_the_document(name: str, expected: str) -> None:
    assert PLAIN_CHATS[name].render(WITH_SYSTEM) == expected


def test_a_system_message_follows_the_dialogue_frame() -> None:
    text = PLAIN_CHATS["dialogue"].render([("developer", "Be brief."), *WITH_SYSTEM[1:]])
    assert text.startswith(f"{FRAME}\nBe brief.\n\nUser: Hi! Can you help me?\n")
    assert text.endswith("\nUser: Who wrote Hamlet?\nAssistant:")


def test_other_roles_are_named_turns() -> None:
    text = PLAIN_CHATS["qa"].render([("user", "Weather?"), ("tool", "sunny")])
    assert text == "Question: Weather?\nTool: sunny\nAnswer:"


@pytest.mark.parametrize(
    ("name", "stops"),
    [
        ("transcript", {"\nuser:", "\nUser:", "\nsystem:", "\nassistant:"}),
        ("dialogue", {"\nUser:", "\nuser:", "\nAssistant:"}),
        ("qa", {"\nQuestion:", "\nquestion:", "\nAnswer:"}),
        ("instruct", {"\n### Instruction:", "\n### Response:"}),
    ],
)
def test_a_reply_ends_where_a_new_turn_starts(name: str, stops: set[str]) -> None:
    assert stops <= set(PLAIN_CHATS[name].stops)


def test_an_echoed_user_turn_is_cut_from_the_reply() -> None:
    """What a base model writes after its answer, the user's next message, never reaches the
    client, even when the turn's label arrives split over two pieces."""
    matcher = StopMatcher(turn_stops(Plain(), PLAIN_CHATS[DEFAULT_PLAIN_CHAT]))  # type: ignore[arg-type]
    label = PLAIN_CHATS[DEFAULT_PLAIN_CHAT].label("user").strip()
    pieces = [" Shakespeare.", "\n", label[:3], label[3:] + " Who wrote"]
    assert "".join(matcher.feed(p) for p in pieces) + matcher.flush() == " Shakespeare."
    assert matcher.stopped


def test_a_chat_template_wins_over_any_rendering() -> None:
    messages = [ChatMessage(role="user", content="Hi")]
    for plain in PLAIN_CHATS.values():
        assert chat_prompt(Templated(), messages, plain) == "<template>"  # type: ignore[arg-type]
        assert turn_stops(Templated(), plain) == ()  # type: ignore[arg-type]
    default = chat_prompt(Plain(), messages)  # type: ignore[arg-type]
    assert default == PLAIN_CHATS[DEFAULT_PLAIN_CHAT].render([("user", "Hi")])


def test_each_backend_takes_its_rendering_from_the_catalog() -> None:
    local = TransformersBackend("g", TransformersConfig(model="m", plain_chat="dialogue"))
    assert local.plain_chat is PLAIN_CHATS["dialogue"]
    assert TransformersBackend("g", TransformersConfig(model="m")).plain_chat.name == (
        DEFAULT_PLAIN_CHAT
    )
    remote = OpenAIBackendConfig(base_url="http://x/v1", model="m", plain_chat="instruct")
    assert OpenAIBackend("r", remote).plain_chat is PLAIN_CHATS["instruct"]
    with pytest.raises(ValidationError, match="transcript"):
        TransformersConfig(model="m", plain_chat="markdown")  # type: ignore[arg-type]
