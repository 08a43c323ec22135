"""Tokenizer facts a backend tells: vocabulary fingerprint, chat prompts, streaming detokenising.

Works with any tokenizer that has the Hugging Face shape (`get_vocab`, `decode`, `encode`,
`apply_chat_template`); mlx-lm's wrapper and vLLM's tokenizer have it too, so this module
imports no runtime.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Protocol

from gateway.core.plain_chat import DEFAULT_PLAIN_CHAT, PLAIN_CHATS, PlainChat
from gateway.core.protocol import ChatMessage

REPLACEMENT = "\ufffd"


class HFTokenizer(Protocol):
    """The part of a Hugging Face tokenizer Tandem uses."""

    def get_vocab(self) -> dict[str, int]: ...

    def decode(self, ids: Any, **kwargs: Any) -> str: ...

    def encode(self, text: str, **kwargs: Any) -> list[int]: ...

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def fingerprint(tokenizer: HFTokenizer) -> str:
    """A digest of the id <-> token mapping: equal fingerprints mean token ids can be exchanged.

    Special tokens are part of `get_vocab()`, so two tokenizers differing only in an added
    token differ here too; normalisation rules are not hashed (same ids, same meaning).
    """
    vocab = sorted((i, t) for t, i in tokenizer.get_vocab().items())
    digest = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode())
    return "vocab-" + digest.hexdigest()[:16]


def longest_token(tokenizer: HFTokenizer) -> int:
    """Characters of the vocabulary's longest entry: no token decodes to more text (a
    byte-level entry has a character per byte; a SentencePiece one its own characters)."""
    return max((len(token) for token in tokenizer.get_vocab()), default=1)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(
    tokenizer: HFTokenizer,
    messages: Sequence[ChatMessage],
    plain: PlainChat = PLAIN_CHATS[DEFAULT_PLAIN_CHAT],
) -> str:
    """The prompt text for a conversation, ending where the assistant's reply starts.

    A model without a chat template (a base model) gets the conversation written as `plain`,
    a document it can continue (`gateway.core.plain_chat`).
    """
    if has_chat_template(tokenizer):
        turns = [{"role": m.role, "content": m.text()} for m in messages]
        text = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        return str(text)
    return plain.render([(m.role, m.text()) for m in messages])


def turn_stops(tokenizer: HFTokenizer, plain: PlainChat) -> tuple[str, ...]:
    """Where a reply rendered by `chat_prompt` ends besides end-of-sequence: a template's
    model writes its own end of turn; a base model goes on with the next turn of `plain`."""
    return () if has_chat_template(tokenizer) else plain.stops


def encode_prompt(tokenizer: HFTokenizer, text: str, *, templated: bool) -> list[int]:
    """Token ids of a prompt; a rendered chat template already holds its special tokens."""
    return list(tokenizer.encode(text, add_special_tokens=not templated))


class StreamDetokenizer:
    """Turns a growing list of token ids into text pieces, never splitting a character.

    Byte-level vocabularies put one emoji or CJK character over several tokens; decoding
    them one by one yields U+FFFD. Text is released only once the tail decodes cleanly, and
    each new piece is decoded together with the previously released tokens so that leading
    spaces and merges come out as they would in the whole text (vLLM's incremental scheme).
    """

    def __init__(self, tokenizer: HFTokenizer, *, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # ids up to here have been released as text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special)

    def add(self, ids: Sequence[int]) -> str:
        """Append token ids; return the text that is now complete (maybe empty)."""
        self.ids.extend(ids)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if after.endswith(REPLACEMENT) or len(after) <= len(before):
            return ""
        self._prefix = self._read
        self._read = len(self.ids)
        return after[len(before) :]

    def flush(self) -> str:
        """Whatever is still held back (a sequence that ended mid-character)."""
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        self._read = len(self.ids)
        return after[len(before) :] if len(after) > len(before) else ""


class StopMatcher:
    """Cuts streamed text at the first stop string, holding back what might begin one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of `held + text` that is safe to send; sets `stopped` at a stop string."""
        if self.stopped:
            return ""
        buffer = self._held + text
        cut = min((p for s in self.stops if (p := buffer.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return buffer[:cut]
        keep = self._partial_suffix(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest end of `text` that is a proper start of some stop string."""
        best = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:size]):
                    best = size
                    break
        return best
