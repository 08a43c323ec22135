"""Tokenizer facts on SmolLM2's real byte-level tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from gateway.core.plain_chat import PLAIN_CHATS
from gateway.core.protocol import ChatMessage
from gateway.core.tokens import StopMatcher, StreamDetokenizer, chat_prompt, fingerprint

MIXED = "Hi 👋🏽 世界, こんにちは! 🎉 naïve café 🇫🇷 end"


@pytest.fixture(scope="module")
def tokenizer(smollm2_folder: Path) -> Any:
    return AutoTokenizer.from_pretrained(smollm2_folder)


def test_one_token_at_a_time_never_breaks_a_character(tokenizer: Any) -> None:
    ids = tokenizer.encode(MIXED)
    # the test means something only if single tokens do split characters
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)
    detok = StreamDetokenizer(tokenizer)
    pieces = [detok.add([i]) for i in ids] + [detok.flush()]
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) == MIXED


def test_uneven_batches_give_the_same_text(tokenizer: Any) -> None:
    ids = tokenizer.encode(MIXED * 3)
    detok = StreamDetokenizer(tokenizer)
    pieces, at, size = [], 0, 1
    while at < len(ids):
        pieces.append(detok.add(ids[at : at + size]))
        at, size = at + size, size % 4 + 1
    pieces.append(detok.flush())
    assert "".join(pieces) == MIXED * 3
    assert all("\ufffd" not in piece for piece in pieces)


def test_a_sequence_cut_mid_character_is_flushed_not_lost(tokenizer: Any) -> None:
    ids = tokenizer.encode("ok 🎉")
    detok = StreamDetokenizer(tokenizer)
    text = "".join(detok.add([i]) for i in ids[:-1])
    assert text == "ok"
    assert detok.flush().startswith(" ")


def test_fingerprint_is_stable_and_tells_vocabularies_apart(
    tokenizer: Any, smollm2_folder: Path
) -> None:
    again = AutoTokenizer.from_pretrained(smollm2_folder)
    assert fingerprint(again) == fingerprint(tokenizer)
    again.add_tokens(["<tandem-extra>"])
    assert fingerprint(again) != fingerprint(tokenizer)


def test_chat_prompt_uses_the_models_template(tokenizer: Any) -> None:
    text = chat_prompt(tokenizer, [ChatMessage(role="user", content="Hello?")])
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nHello?<|im_end|>" in text


def test_chat_prompt_without_a_template_is_a_plain_document(tokenizer: Any) -> None:
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Hi"),
    ]
    assert chat_prompt(plain, messages) == "Be brief.\n\nQuestion: Hi\nAnswer:"
    transcript = chat_prompt(plain, messages, PLAIN_CHATS["transcript"])
    assert transcript == "system: Be brief.\nuser: Hi\nassistant:"


@pytest.mark.parametrize(
    ("pieces", "stops", "sent", "stopped"),
    [
        (["Hello wo", "rld. END", " more"], ["END"], "Hello world. ", True),
        (["ab", "c", "d"], ["cd"], "ab", True),
        (["ab", "c", "x"], ["cd"], "abcx", False),
        (["one\n", "\nuser", ": hi"], ["\nuser:"], "one\n", True),
        (["no stops here"], [], "no stops here", False),
    ],
)
def test_stop_matcher_cuts_at_the_first_stop_and_holds_back_partial_ones(
    pieces: list[str], stops: list[str], sent: str, stopped: bool
) -> None:
    matcher = StopMatcher(stops)
    out = ""
    for piece in pieces:
        out += matcher.feed(piece)
        if matcher.stopped:
            break
    out += matcher.flush()
    assert (out, matcher.stopped) == (sent, stopped)
