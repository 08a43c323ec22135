"""Where does the small model go wrong? Rows for a router, one per position the small model writes.

For one prompt, the small model answers greedily; at each position where the collab policy would
consult its trigger (nothing held back mid-character), a row records what the small backend gives
(entropy, top-k log-probs, hidden state, its token) and two labels:
- `diverge`: the large model's greedy token under the same prefix differs from the small one's.
  With one vocabulary the ids are compared (the large model scores the whole answer in one pass);
  across vocabularies, the text each would write at the seam: they agree when one is a prefix of
  the other. The large model reads the answer so far in its own tokens, as the policy hands it
  over when it steps in there.
- `critical` (only when the prompt has targets): R2R's sharper label. The small model continues
  greedily from the large model's token instead of its own; the position is critical when that
  answer is graded right and the small model's own answer wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.backends.sessions import Distribution, Stop, TokenBackend
from gateway.core.plain_chat import DEFAULT_PLAIN_CHAT, PLAIN_CHATS, PlainChat
from gateway.core.protocol import ChatMessage
from gateway.core.tokens import (
    REPLACEMENT,
    chat_prompt,
    encode_prompt,
    has_chat_template,
    turn_stops,
)
from gateway.policies.seam import Text, encode_exact
from gateway.training.prompts import Prompt, correct


@dataclass(frozen=True)
class Pair:
    small: TokenBackend
    large: TokenBackend
    # how each model reads a conversation when its tokenizer has no chat template
    small_chat: PlainChat = PLAIN_CHATS[DEFAULT_PLAIN_CHAT]
    large_chat: PlainChat = PLAIN_CHATS[DEFAULT_PLAIN_CHAT]

    @property
    def same_vocab(self) -> bool:
        return self.small.fingerprint == self.large.fingerprint

    def eos(self, backend: TokenBackend) -> frozenset[int]:
        return frozenset(getattr(backend, "eos_ids", frozenset()))


@dataclass(frozen=True)
class Setup:
    max_tokens: int = 16
    top_k: int = 8
    stops: tuple[str, ...] = ("\n",)


@dataclass
class Position:
    dist: Distribution
    token: int
    piece: str | None  # the text it adds; None: end of sequence
    before: str  # the answer's text before it
    ids_before: list[int]  # the small model's answer ids before it
    consulted: bool  # the policy would ask its trigger here


@dataclass
class Row:
    position: int
    entropy: float
    top_logprobs: list[float]
    hidden: list[float] | None
    token: int
    diverge: int
    critical: int | None = None


@dataclass
class Record:
    """One prompt's answer and rows."""

    prompt: str
    answer: str
    correct: bool | None
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class Prompts:
    """One prompt in each model's ids, and the stop strings its form adds."""

    small: list[int]
    large: list[int]
    stops: tuple[str, ...]


def encode(pair: Pair, prompt: Prompt, setup: Setup) -> Prompts:
    """The prompt as the collab policy would give it to each model."""
    small, large = pair.small.tokenizer, pair.large.tokenizer
    if prompt.messages is None:
        text = prompt.text or ""
        small_ids = list(small.encode(text))
        large_ids = small_ids if pair.same_vocab else list(large.encode(text))
        return Prompts(small_ids, large_ids, setup.stops)
    messages = [ChatMessage.model_validate(m) for m in prompt.messages]
    ids, stops = [], list(setup.stops)
    for tokenizer, plain in ((small, pair.small_chat), (large, pair.large_chat)):
        text = chat_prompt(tokenizer, messages, plain)
        ids.append(encode_prompt(tokenizer, text, templated=has_chat_template(tokenizer)))
        stops += [s for s in turn_stops(tokenizer, plain) if s not in stops]
    return Prompts(ids[0], ids[0] if pair.same_vocab else ids[1], tuple(stops))


async def collect(pair: Pair, prompt: Prompt, setup: Setup) -> Record:
    ids = encode(pair, prompt, setup)
    positions, answer = await small_answer(pair, ids, setup)
    labels = await (same_vocab_labels if pair.same_vocab else text_labels)(pair, ids, positions)
    graded = correct(answer, prompt.targets) if prompt.targets else None
    record = Record(prompt.id, answer, graded)
    for i, (position, label) in enumerate(zip(positions, labels, strict=True)):
        if label is None:
            continue
        dist = position.dist
        record.rows.append(
            Row(i, dist.entropy, list(dist.logprobs), dist.hidden, position.token, int(label))
        )
    if graded is not None:
        await critical_labels(pair, ids, positions, record, prompt.targets, setup)
    return record


async def small_answer(pair: Pair, ids: Prompts, setup: Setup) -> tuple[list[Position], str]:
    """The small model's greedy answer, position by position, with its distributions."""
    eos = pair.eos(pair.small)
    session = await pair.small.open_session(ids.small, hidden=True)
    text, answer, positions = Text(pair.small.tokenizer), "", []
    try:
        for _ in range(setup.max_tokens):
            dist = await session.next_distribution(setup.top_k)
            token, consulted, before = dist.ids[0], not text.holding, list(text.ids)
            piece = None if token in eos else text.add([token])
            positions.append(Position(dist, token, piece, answer, before, consulted))
            if piece is None:
                break
            await session.append([token])
            answer += piece
            if any(stop in answer for stop in ids.stops):
                break
    finally:
        await session.close()
    return positions, answer + text.flush()


async def same_vocab_labels(
    pair: Pair, ids: Prompts, positions: Sequence[Position]
) -> list[bool | None]:
    """One pass of the large model over the small one's answer: its top-1 at each position."""
    tokens = [p.token for p in positions]
    session = await pair.large.open_session(ids.large)
    try:
        scored = await session.score(tokens, k=1)
    finally:
        await session.close()
    labels: list[bool | None] = []
    for position, choice in zip(positions, scored, strict=True):
        top = choice.top[0][0] if choice.top else choice.id
        labels.append(top != position.token if position.consulted else None)
    return labels


async def text_labels(pair: Pair, ids: Prompts, positions: Sequence[Position]) -> list[bool | None]:
    """At each position, the text the large model would write after the answer so far, read
    in its own tokens: the seam as the policy builds it when the large model steps in there."""
    labels: list[bool | None] = []
    for position in positions:
        if not position.consulted:
            labels.append(None)
            continue
        theirs = await _large_next(pair, ids, position)
        labels.append(_disagree(position.piece, theirs))
    return labels


async def _large_next(pair: Pair, ids: Prompts, position: Position) -> str | None:
    """The large model's greedy next text after `position.before` (None: end of sequence)."""
    text = Text(pair.large.tokenizer)
    text.take(encode_exact(pair.large.tokenizer, position.before))
    async with await pair.large.open_session([*ids.large, *text.ids]) as session:
        top = (await session.next_distribution(1)).ids[0]
    return None if top in pair.eos(pair.large) else _piece(text, top)


def _piece(text: Text, token: int) -> str:
    """The text `token` would add after what `text` holds (empty: half a character)."""
    piece = text.after([token])
    return "" if piece.endswith(REPLACEMENT) else piece


def _disagree(ours: str | None, theirs: str | None) -> bool | None:
    """Ends of sequence agree with each other only; texts agree when one starts the other. An
    empty text (half a character) cannot be compared: no label."""
    if ours is None or theirs is None:
        return ours is not theirs
    if not ours or not theirs:
        return None
    return not (ours.startswith(theirs) or theirs.startswith(ours))


async def critical_labels(
    pair: Pair,
    ids: Prompts,
    positions: Sequence[Position],
    record: Record,
    targets: list[str],
    setup: Setup,
) -> None:
    """R2R's label on each diverging row: would the large model's token there have turned a
    wrong answer into a right one, the small model writing the rest?"""
    for row in record.rows:
        row.critical = 0
        if not row.diverge or record.correct:
            continue
        alternative = await _large_token_ids(pair, ids, positions[row.position])
        if alternative is None:
            continue
        answer = await _continue(pair, ids, positions[row.position], alternative, setup)
        row.critical = int(correct(answer, targets))


async def _large_token_ids(pair: Pair, ids: Prompts, position: Position) -> list[int] | None:
    """The large model's token at `position`, in the small model's ids (None: end of text)."""
    if not pair.same_vocab:
        piece = await _large_next(pair, ids, position)
        return encode_exact(pair.small.tokenizer, piece) if piece else None
    async with await pair.large.open_session([*ids.large, *position.ids_before]) as session:
        top = (await session.next_distribution(1)).ids[0]
    return None if top in pair.eos(pair.large) else [top]


async def _continue(
    pair: Pair, ids: Prompts, position: Position, alternative: list[int], setup: Setup
) -> str:
    prefix = [*ids.small, *position.ids_before, *alternative]
    session = await pair.small.open_session(prefix)
    try:
        budget = max(setup.max_tokens - len(position.ids_before) - 1, 1)
        span = await session.generate(budget, Stop(pair.eos(pair.small), list(ids.stops)))
    finally:
        await session.close()
    decode = pair.small.tokenizer.decode
    return str(decode([*position.ids_before, *alternative, *span.ids], skip_special_tokens=True))


def row_json(row: Row) -> dict[str, Any]:
    return vars(row)
