"""Character-level models that follow a rule, for label tests read in one screen.

A `RuleModel` knows a few answers; after the prompt it writes the first answer whose beginning
matches what is written so far (the first answer when none does), one character per token, then
the end of sequence. Its tokenizer maps printable characters to ids from `offset`, so two models
with different offsets have different vocabularies and exchange text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gateway.backends.sessions import GREEDY, Distribution, TokenChoice, TokenSession
from gateway.core.request import Sampling

CHARS = [chr(c) for c in range(32, 127)]
EOS = 0


class CharTokenizer:
    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.chat_template = None

    def get_vocab(self) -> dict[str, int]:
        return {"</s>": EOS, **{c: self.offset + i for i, c in enumerate(CHARS)}}

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        return [self.offset + CHARS.index(c) for c in text]

    def decode(self, ids: Any, **kwargs: Any) -> str:
        return "".join(CHARS[i - self.offset] for i in ids if i != EOS)

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class RuleModel:
    def __init__(self, answers: list[str], offset: int) -> None:
        self.answers = answers
        self.tokenizer = CharTokenizer(offset)
        self.eos_ids = frozenset({EOS})
        self.opened: list[list[int]] = []

    @property
    def fingerprint(self) -> str:
        return f"chars-{self.tokenizer.offset}"

    async def open_session(self, prompt_ids: Sequence[int], *, hidden: bool = False) -> RuleSession:
        self.opened.append(list(prompt_ids))
        return RuleSession(self, prompt_ids)

    def next_token(self, written: str) -> int:
        answer = next((a for a in self.answers if a.startswith(written)), self.answers[0])
        if len(written) >= len(answer):
            return EOS
        return self.tokenizer.encode(answer[len(written)])[0]


class RuleSession(TokenSession):
    """The prompt is every id up to the first `|` character; the rest is the answer so far."""

    def __init__(self, model: RuleModel, prompt_ids: Sequence[int]) -> None:
        super().__init__(prompt_ids)
        self.model = model

    def _written(self) -> str:
        return self.model.tokenizer.decode(self.ids).split("|", 1)[1]

    async def next_distribution(self, k: int) -> Distribution:
        top = self.model.next_token(self._written())
        other = EOS if top != EOS else self.model.tokenizer.offset
        hidden = [float(len(self._written())), float(top % 7)]
        return Distribution([top, other][:k], [math.log(0.9), math.log(0.1)][:k], 0.33, hidden)

    async def score(self, ids: Sequence[int], k: int = 0) -> list[TokenChoice]:
        choices = []
        for token in ids:
            top = self.model.next_token(self._written())
            choices.append(TokenChoice(token, 0.0, [(top, math.log(0.9))][:k]))
            self.ids.append(token)
        return choices

    async def step(self, sampling: Sampling = GREEDY, k: int = 0) -> TokenChoice:
        top = self.model.next_token(self._written())
        self.ids.append(top)
        return TokenChoice(top, math.log(0.9))

    async def close(self) -> None:
        self.closed = True
