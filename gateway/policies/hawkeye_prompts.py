"""HAWKEYE's two prompts, the conversation as text, and the plan as text without think tags.

The default templates follow the paper's (arXiv 2504.00424): the planner gets the question
and is asked for a concise chain of thought that does not repeat it; the expander gets the
question, the chain of thought labelled as such, a sentence saying it helps, and a cue to
answer. Templates are plain text with `{conversation}` (both) and `{plan}` (the expander's);
they are filled by replacement, not `str.format`, so braces in a conversation are inert.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.protocol import ChatMessage

#: bump when the rendering below changes what a planner sees: cached plans are keyed on it
TEMPLATE_VERSION = "1"

PLAN_TEMPLATE = (
    "{conversation}\n\n"
    "Write a concise chain of thought that leads to the answer to the above. Do not repeat "
    "the question; give only the essential reasoning steps."
)
EXPAND_TEMPLATE = (
    "Question:\n{conversation}\n\n"
    "Chain of thought:\n{plan}\n\n"
    "The chain of thought above helps you answer the question. Using it, write the answer.\n"
    "Answer:"
)
THINK_TAGS = ("<think>", "</think>")
LABELS = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}


def conversation_text(messages: Sequence[ChatMessage]) -> str:
    """The whole conversation: a lone user message as it is, otherwise a labelled transcript
    (the planner must see every turn, not only the last one)."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].text()
    lines = [f"{LABELS.get(m.role, m.role.title())}: {m.text()}" for m in messages]
    return "\n".join(lines)


def normalised(messages: Sequence[ChatMessage]) -> list[list[str]]:
    """The conversation as the plan cache keys it: roles and text, whitespace collapsed."""
    return [[m.role, " ".join(m.text().split())] for m in messages]


def fill(template: str, conversation: str, plan: str = "") -> str:
    # the conversation goes in last: a "{plan}" a user typed must stay as typed
    return template.replace("{plan}", plan).replace("{conversation}", conversation)


class ThinkStripper:
    """Removes `<think>` / `</think>` from streamed text, also when a tag is split across
    pieces: a tail that may begin a tag is held until the next piece decides."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._held + piece
        for tag in THINK_TAGS:
            text = text.replace(tag, "")
        keep = _tag_prefix_length(text)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


def _tag_prefix_length(text: str) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a think tag."""
    for size in range(min(len(text), max(map(len, THINK_TAGS)) - 1), 0, -1):
        tail = text[-size:]
        if any(tag.startswith(tail) for tag in THINK_TAGS):
            return size
    return 0
