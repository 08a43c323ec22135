"""The seam between two models writing one text.

Each model keeps its own token sequence for the shared completion. What one model writes, the
other receives: as token ids when the vocabularies are the same, otherwise as text that the
receiver encodes with its own tokenizer. The client's text is only ever the text each writer
released, so the output is the concatenation of the spans whatever the receivers' tokenisation
(a span may end inside a word: the receiver just sees an unusual split).

Two rules keep every hand-off on a character boundary, so no side ever holds half of a UTF-8
character that the other side wrote the rest of:
- a writer's text is released only when it decodes cleanly (`Text.add` holds back the rest);
- the policy consults its trigger, and a large span ends, only where nothing is held back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.backends.sessions import TokenSession
from gateway.core.tokens import REPLACEMENT, HFTokenizer


class Text:
    """The completion's tokens in one vocabulary, decoded incrementally.

    Like `gateway.core.tokens.StreamDetokenizer`, but it says whether text is held back and can
    take ids whose text was already written by the other model (`take`).
    """

    def __init__(self, tokenizer: HFTokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0  # decoding context starts here: merges and spaces come out right
        self._read = 0  # ids before this have been released

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @property
    def holding(self) -> bool:
        return self._read < len(self.ids)

    def add(self, ids: Sequence[int]) -> str:
        """Append ids; return the text that is now complete."""
        self.ids.extend(ids)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if after.endswith(REPLACEMENT) or len(after) <= len(before):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before) :]

    def after(self, ids: Sequence[int]) -> str:
        """The text `ids` would add after what is here, without adding them (decoded with the
        last few ids as context, for merges and leading spaces)."""
        if not ids:
            return ""
        context = self.ids[-4:]
        before = self._decode(context)
        return self._decode([*context, *ids])[len(before) :]

    def take(self, ids: Sequence[int]) -> None:
        """Append ids whose text is already out (written by the other side); they are the
        decoding context of what comes next, as a released piece is in `add`."""
        if ids:
            self._prefix = len(self.ids)
            self.ids.extend(ids)
            self._read = len(self.ids)

    def flush(self) -> str:
        """What is held back, as it decodes (a sequence that ended mid-character)."""
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        self._read = len(self.ids)
        return after[len(before) :] if len(after) > len(before) else ""


def encode_exact(tokenizer: HFTokenizer, text: str) -> list[int]:
    """`text` in `tokenizer`'s ids, without special tokens; for byte-level and byte-fallback
    vocabularies `decode(encode_exact(t)) == t` (tested for the catalog's models)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


@dataclass
class Side:
    """One model's view of the shared completion: its session and its tokens of the text."""

    session: TokenSession
    text: Text
    written: int = 0  # tokens this side generated
    unsent: list[int] = field(default_factory=list)  # received ids the session has not read

    def receive_ids(self, ids: Sequence[int]) -> None:
        self.text.take(ids)
        self.unsent.extend(ids)

    def receive_text(self, text: str) -> None:
        self.receive_ids(encode_exact(self.text.tokenizer, text))

    async def sync(self) -> None:
        """Hand the session what it has not read yet (in-process: lazily, one forward pass)."""
        if self.unsent:
            ids, self.unsent = self.unsent, []
            await self.session.append(ids)
