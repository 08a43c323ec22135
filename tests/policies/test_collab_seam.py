"""The seam between two vocabularies: whatever the cuts, the text is the concatenation of the
spans, and each model's tokens spell exactly that text (SmolLM2's byte-level BPE and Gemma-3's
byte-fallback SentencePiece, the default catalog's pair)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.tokens import HFTokenizer
from gateway.models import prepare
from gateway.policies.seam import Text, encode_exact

ALPHABET = st.sampled_from(
    [*list("abcdeFGH xyz.,;!?\n\t-'\"0123"), "é", "漢", "字", "🐉", "ß", "  "]
)
TEXTS = st.lists(ALPHABET, min_size=1, max_size=40).map("".join)


@pytest.fixture(scope="module")
def tokenizers() -> tuple[HFTokenizer, HFTokenizer]:
    from transformers import AutoTokenizer

    folders = [Path(prepare(m).location) for m in ("smollm2-135m", "gemma3-270m")]
    a, b = (AutoTokenizer.from_pretrained(f) for f in folders)
    return a, b


def hand_off(text: str, cuts: list[int], tokenizers: tuple[HFTokenizer, HFTokenizer]) -> None:
    """Alternate writers over the pieces of `text`, as the policy does, and check every view."""
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    sides = [Text(tokenizers[0]), Text(tokenizers[1])]
    out = ""
    for turn, (start, end) in enumerate(itertools.pairwise(bounds)):
        writer, reader = sides[turn % 2], sides[1 - turn % 2]
        piece = text[start:end]
        # the writer writes the piece token by token; the reader gets the released text
        released = "".join(writer.add([t]) for t in encode_exact(writer.tokenizer, piece))
        assert not writer.holding
        assert released == piece
        out += released
        reader.take(encode_exact(reader.tokenizer, released))
    assert out == text
    for side in sides:
        assert side.tokenizer.decode(side.ids, skip_special_tokens=True) == text


@settings(max_examples=150, deadline=None)
@given(text=TEXTS, cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8))
def test_any_cuts_give_back_the_exact_text(
    tokenizers: tuple[HFTokenizer, HFTokenizer], text: str, cuts: list[int]
) -> None:
    hand_off(text, cuts, tokenizers)


@pytest.mark.parametrize(
    ("text", "cuts"),
    [
        ("The capital of France is Paris.", [8, 11]),  # "capi" | "tal": inside a word
        ("  two spaces, then\n\nnew lines", [1, 15, 19]),  # inside runs of whitespace
        ("dragon 🐉 and 漢字 after", [7, 8, 13, 14]),  # next to multi-byte characters
    ],
)
def test_named_seams(
    tokenizers: tuple[HFTokenizer, HFTokenizer], text: str, cuts: list[int]
) -> None:
    hand_off(text, cuts, tokenizers)


def test_half_a_character_is_held_back(tokenizers: tuple[HFTokenizer, HFTokenizer]) -> None:
    side = Text(tokenizers[0])
    ids = encode_exact(side.tokenizer, "🐉")
    assert len(ids) > 1  # a byte-level vocabulary spells it in pieces
    assert side.add(ids[:1]) == ""
    assert side.holding
    assert side.add(ids[1:]) == "🐉"
    assert not side.holding
