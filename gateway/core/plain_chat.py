"""How a conversation reads to a model without a chat template (a base model).

A base model continues a document; the rendering decides which document. Given a bare
`user: ... / assistant:` transcript, Gemma-3-270M mostly writes the user's words back instead
of answering. Each format here is a kind of text such a model has read many of, ending where
the reply starts, with the strings that open the next turn as stops (the model, left alone,
would go on to write the user's next message). A catalog backend picks one with `plain_chat`;
the default, `qa`, is the one measured best (docs/models.md).

Formats (a system message goes on top, before the turns, except in `transcript`):
- `transcript`: `system: ...` / `user: ...` / `assistant:`, the original rendering;
- `dialogue`: a one-line frame saying a user talks to an assistant that answers directly, a
  generic greeting exchange, then `User: ...` / `Assistant:`;
- `qa`: `Question: ...` / `Answer:`;
- `instruct`: `### Instruction:` / `### Response:` blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

PlainChatName = Literal["transcript", "dialogue", "qa", "instruct"]
SYSTEM_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True)
class PlainChat:
    """One way to write a conversation as a document a base model continues."""

    name: str
    #: what opens each role's turn; a role not named here is written as `Role: `
    labels: Mapping[str, str]
    #: what the reply follows: the assistant's label, without what the model writes itself
    cue: str
    between: str = "\n"  # between two turns
    frame: str = ""  # opening text, before any system message
    #: generic turns shown before the conversation, so the model has seen a reply
    opening: tuple[tuple[str, str], ...] = ()
    system_on_top: bool = True  # False: a system message is a turn like the others
    stops: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        # a reply ends where the model starts another turn, its own included, in either case
        heads = {label.strip().split("\n")[0] for label in self.labels.values()}
        both = {h for head in heads if head for h in (head, head.lower(), head.capitalize())}
        object.__setattr__(self, "stops", tuple(sorted("\n" + h for h in both)))

    def label(self, role: str) -> str:
        return self.labels.get(role, f"{role.capitalize()}: ")

    def render(self, turns: Sequence[tuple[str, str]]) -> str:
        """The prompt for `(role, text)` turns, ending where the assistant's reply starts."""
        on_top = [t for r, t in turns if r in SYSTEM_ROLES] if self.system_on_top else []
        body = [(r, t) for r, t in turns if not (self.system_on_top and r in SYSTEM_ROLES)]
        head = "\n".join(part for part in (self.frame, *on_top) if part)
        written = [self.label(role) + text for role, text in (*self.opening, *body)]
        return (head + "\n\n" if head else "") + self.between.join([*written, self.cue])


TRANSCRIPT = PlainChat(
    "transcript",
    labels={"system": "system: ", "user": "user: ", "assistant": "assistant: "},
    cue="assistant:",
    system_on_top=False,
)
DIALOGUE = PlainChat(
    "dialogue",
    labels={"user": "User: ", "assistant": "Assistant: "},
    cue="Assistant:",
    frame="The following is a conversation between a user and an AI assistant. "
    "The assistant answers briefly and directly, without repeating the question.",
    opening=(("user", "Hi! Can you help me?"), ("assistant", "Of course. What do you need?")),
)
QA = PlainChat("qa", labels={"user": "Question: ", "assistant": "Answer: "}, cue="Answer:")
INSTRUCT = PlainChat(
    "instruct",
    labels={"user": "### Instruction:\n", "assistant": "### Response:\n"},
    cue="### Response:\n",
    between="\n\n",
)
PLAIN_CHATS: dict[str, PlainChat] = {f.name: f for f in (TRANSCRIPT, DIALOGUE, QA, INSTRUCT)}
# measured on 100 held-out qa_wikidata questions, Gemma-3-270M alone in chat: qa 37% right with
# 1 reply in 100 writing the question back, dialogue 27% (12), transcript 1% (77), instruct 0%
# (73); its few-shot completion 39% (docs/models.md)
DEFAULT_PLAIN_CHAT: PlainChatName = "qa"
