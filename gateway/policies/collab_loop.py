"""One choice of a collaborative decode: the small model writes, the large model steps in.

```
loop:  small.next_distribution -> trigger?
         no  -> small.step                                   (one small token)
         yes -> large.generate(span) in a task  ||  small drafts ahead
                ok        -> keep the drafts the large span agrees with, rewind the rest
                failed    -> the small model's own token; degraded; breaker counts it
```
Sessions live as long as the choice: the small one keeps its KV cache across interventions and
the large one is handed only what was written since it last looked (`seam.Side.sync`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from gateway.backends.sessions import Distribution, Stop, TokenBackend, TokenChoice
from gateway.core.events import Delta, Event, Finish, Source
from gateway.core.request import Sampling
from gateway.core.tokens import StopMatcher
from gateway.policies.breaker import CircuitBreaker
from gateway.policies.rewind import can_rewind, rewind
from gateway.policies.seam import Side, Text, encode_exact
from gateway.policies.triggers import Trigger

log = logging.getLogger(__name__)
T = TypeVar("T")
Piece = tuple[Source, str, bool]  # who wrote it, its text, whether it ends the text

SPAN_ENDS = (".", ",", ";", ":", "!", "?", "\n")
MAX_CHARACTER_TOKENS = 4  # a byte-level vocabulary spells one character in at most 4 tokens


@dataclass(frozen=True)
class Plan:
    """What every choice of one request shares."""

    small: TokenBackend
    large: TokenBackend
    same_vocab: bool
    small_prompt: list[int]
    large_prompt: list[int]
    small_eos: frozenset[int]
    large_eos: frozenset[int]
    stops: list[str]
    max_tokens: int
    trigger: Trigger
    breaker: CircuitBreaker
    span: int
    span_stop: bool
    draft: int  # 0: no drafting
    deadline: float
    top_k: int


@dataclass
class Tally:
    """One choice's account: tokens by source, interventions, faults, time."""

    small: int = 0
    large: int = 0
    interventions: int = 0
    failures: int = 0
    skipped: int = 0  # interventions the open breaker skipped
    drafted: int = 0
    draft_kept: int = 0
    large_seconds: list[float] = field(default_factory=list)
    model_seconds: float = 0.0  # awaiting the small model or the large one
    wall_seconds: float = 0.0

    @property
    def degraded(self) -> bool:
        return bool(self.failures or self.skipped)


@dataclass
class Pace:
    """Moving averages of a small forward pass and a large call, seconds: a draft step is
    started only if it should end before the large model answers (a forward pass cannot be
    interrupted, so a late one delays the answer)."""

    small: float | None = None
    large: float | None = None

    @staticmethod
    def mix(old: float | None, new: float) -> float:
        return new if old is None else 0.7 * old + 0.3 * new


@dataclass
class LargeSpan:
    ids: list[int]
    texts: list[str]  # the text each token completed
    eos: bool

    @property
    def text(self) -> str:
        return "".join(self.texts)


@dataclass
class Draft:
    choice: TokenChoice
    before: Distribution  # the small model's distribution this token was picked from


class Choice:
    """Decodes one choice; `events()` yields its deltas and its finish."""

    def __init__(self, plan: Plan, index: int, sampling: Sampling) -> None:
        self.plan = plan
        self.index = index
        self.sampling = sampling
        seed = sampling.seed
        self.large_sampling = replace(sampling, seed=None if seed is None else seed + 7919)
        self.tally = Tally()
        self.stopper = StopMatcher(plan.stops)
        self.out_text = ""  # every character written so far, before stop strings cut it
        self.small: Side | None = None
        self.large: Side | None = None
        self.large_seen = 0  # how much of the completion the large side has been given
        self.finish = "length"
        self.pace = Pace()

    @property
    def written(self) -> int:
        return self.tally.small + self.tally.large

    async def events(self) -> AsyncIterator[Event]:
        started = time.perf_counter()
        hidden = self.plan.trigger.needs_hidden
        session = await self.plan.small.open_session(self.plan.small_prompt, hidden=hidden)
        self.small = Side(session, Text(self.plan.small.tokenizer))
        try:
            async for event in self._loop():
                yield event
        finally:
            await session.close()
            await self._drop_large()
            self.tally.wall_seconds = time.perf_counter() - started

    async def _loop(self) -> AsyncIterator[Event]:
        small = self._small()
        while self.written < self.plan.max_tokens and self.finish == "length":
            await small.sync()
            dist = await self._forward()
            if not small.text.holding and self._consult(dist):
                pieces = await self._intervene(dist)
            else:
                pieces = [await self._small_token(dist)]
            for source, text, end in pieces:
                for event in self._emit(source, text):
                    yield event
                if end:
                    self.finish = "stop"
        tail = small.text.flush()
        for event in self._emit("small", tail):
            yield event
        if not self.stopper.stopped:
            for event in self._emit("small", self.stopper.flush(), cut=False):
                yield event
        yield Finish(self.index, "stop" if self.stopper.stopped else self.finish)

    def _consult(self, dist: Distribution, ahead: int = 0) -> bool:
        """Ask the trigger about the token `ahead` tokens past what is written (a learned
        router reads the position in the answer)."""
        return self.plan.trigger.fire(replace(dist, position=self.written + ahead))

    def _emit(self, source: Source, text: str, cut: bool = True) -> list[Event]:
        if self.stopper.stopped or not text:
            return []
        if cut:
            self.out_text += text
            text = self.stopper.feed(text)
        if self.stopper.stopped:
            self.finish = "stop"
        return [Delta(self.index, text, source)] if text else []

    async def _forward(self) -> Distribution:
        """The small model's next distribution: one forward pass over what it has not read."""
        began = time.perf_counter()
        dist = await self._timed(self._small().session.next_distribution(self.plan.top_k))
        self.pace.small = Pace.mix(self.pace.small, time.perf_counter() - began)
        return dist

    def _in_time(self, began: float) -> bool:
        small, large = self.pace.small, self.pace.large
        if small is None or large is None:
            return True
        return time.perf_counter() - began + small <= large

    def _small(self) -> Side:
        assert self.small is not None, "the small session opens first"
        return self.small

    async def _timed(self, awaitable: Awaitable[T]) -> T:
        began = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.tally.model_seconds += time.perf_counter() - began

    async def _pick(self, dist: Distribution) -> TokenChoice:
        """The small model's token at `dist`. Greedy, it is the distribution's top-1: appended
        lazily, it costs no trip to the model's thread (read with the next forward pass)."""
        session = self._small().session
        if self.sampling.greedy and dist.ids:
            choice = TokenChoice(dist.ids[0], dist.logprobs[0])
            await session.append([choice.id])
            return choice
        return await self._timed(session.step(self.sampling))

    async def _small_token(self, dist: Distribution) -> Piece:
        return self._commit_small((await self._pick(dist)).id)

    def _commit_small(self, token: int) -> Piece:
        """A token the small model wrote, already in its session."""
        self.tally.small += 1
        return "small", self._small().text.add([token]), token in self.plan.small_eos

    # -- interventions ------------------------------------------------------------------

    async def _intervene(self, dist: Distribution) -> list[Piece]:
        if self.plan.breaker.open:
            self.tally.skipped += 1  # the large model is known to be failing: do not wait for it
            return [await self._small_token(dist)]
        self.tally.interventions += 1
        began = time.perf_counter()
        task = asyncio.ensure_future(self._large_span())
        drafts = await self._draft(task, dist) if self._drafting() else []
        left = max(0.0, self.plan.deadline - (time.perf_counter() - began))
        try:
            span = await self._timed(asyncio.wait_for(task, left))
        except Exception as exc:  # whatever the large model did, the request goes on without it
            return await self._large_failed(exc, drafts, dist)
        finally:
            took = time.perf_counter() - began
            self.tally.large_seconds.append(took)
            self.pace.large = Pace.mix(self.pace.large, took)
        self.plan.breaker.success()
        return await self._reconcile(span, drafts)

    async def _large_failed(
        self, exc: Exception, drafts: list[Draft], dist: Distribution
    ) -> list[Piece]:
        self.tally.failures += 1
        self.plan.breaker.failure()
        log.warning("large model failed (%s); the small model's token is used", type(exc).__name__)
        await self._drop_large()  # its session may hold half a span: start afresh next time
        if not drafts:
            return [await self._small_token(dist)]
        small = self._small()
        await rewind(small.session, self._small_base() + 1)
        self.tally.draft_kept += 1
        return [self._commit_small(drafts[0].choice.id)]

    async def _drop_large(self) -> None:
        large, self.large = self.large, None
        if large is not None:
            await large.session.close()

    def _small_base(self) -> int:
        """Length of the small session's sequence without drafts."""
        return len(self.plan.small_prompt) + len(self._small().text.ids)

    # -- the large model's span -----------------------------------------------------------

    async def _large_span(self) -> LargeSpan:
        large = await self._large_side()
        self._hand_over(large)
        await large.sync()
        plan = self.plan
        budget = min(plan.span, plan.max_tokens - self.written)
        ends = [*plan.stops, *(SPAN_ENDS if plan.span_stop else ())]
        decode = large.text.tokenizer.decode
        span = await large.session.generate(
            budget, Stop(plan.large_eos, ends), self.large_sampling, decode=decode
        )
        ids = span.ids
        texts = [large.text.add([i]) for i in ids]
        eos = bool(ids) and ids[-1] in plan.large_eos
        while large.text.holding and not eos and len(texts) < budget + MAX_CHARACTER_TOKENS:
            # never hand over half a character: finish it first
            choice = await large.session.step(self.large_sampling)
            ids.append(choice.id)
            texts.append(large.text.add([choice.id]))
        if large.text.holding and not eos:
            texts.append(large.text.flush())
        large.written += len(ids)
        return LargeSpan(ids, texts, eos)

    async def _large_side(self) -> Side:
        if self.large is None:
            session = await self.plan.large.open_session(self.plan.large_prompt)
            self.large = Side(session, Text(self.plan.large.tokenizer))
            self.large_seen = 0
        return self.large

    def _hand_over(self, large: Side) -> None:
        """Give the large side what was written since it last looked."""
        if self.plan.same_vocab:
            ids = self._small().text.ids
            large.receive_ids(ids[self.large_seen :])
            self.large_seen = len(ids)
        else:
            large.receive_text(self.out_text[self.large_seen :])
            self.large_seen = len(self.out_text)

    # -- drafting while the large model works -----------------------------------------------

    def _drafting(self) -> bool:
        seeded_sampling = not self.sampling.greedy and self.sampling.seed is not None
        # how far a draft gets depends on timing: with a seed, reproducibility comes first
        return self.plan.draft > 0 and not seeded_sampling and can_rewind(self._small().session)

    async def _draft(self, task: asyncio.Future[LargeSpan], dist: Distribution) -> list[Draft]:
        drafts: list[Draft] = []
        limit = min(self.plan.draft, self.plan.max_tokens - self.written)
        began = time.perf_counter()
        while not task.done() and len(drafts) < limit:
            choice = await self._pick(dist)
            drafts.append(Draft(choice, dist))
            if choice.id in self.plan.small_eos or task.done() or len(drafts) == limit:
                break
            if not self._in_time(began):
                break
            dist = await self._forward()
        self.tally.drafted += len(drafts)
        return drafts

    # -- after the large span: keep what the drafts got right ---------------------------------

    async def _reconcile(self, span: LargeSpan, drafts: list[Draft]) -> list[Piece]:
        small = self._small()
        agreed, extras = self._agreement(span, drafts)
        base = self._small_base()
        if self.plan.same_vocab:
            small.text.take(span.ids)
            new = span.ids[agreed:]
            self.large_seen = len(small.text.ids)
        else:
            own = [d.choice.id for d in drafts[:agreed]]
            new = encode_exact(small.text.tokenizer, span.text[len(self._draft_text(own)) :])
            small.text.take(own + new)
            self.large_seen = len(self.out_text) + len(span.text)
        if drafts:  # drop the drafts the span did not confirm and read its new tokens at once
            await rewind(small.session, base + agreed + extras, new)
        else:
            small.unsent.extend(new)
        self.tally.draft_kept += agreed + extras
        self.tally.large += len(span.ids)
        pieces: list[Piece] = [("large", text, False) for text in span.texts]
        if pieces:
            pieces[-1] = ("large", span.texts[-1], span.eos)
        pieces += [self._commit_small(d.choice.id) for d in drafts[agreed : agreed + extras]]
        return pieces

    def _agreement(self, span: LargeSpan, drafts: list[Draft]) -> tuple[int, int]:
        """How many drafts spell the span's beginning, and how many after it stand (those the
        small model would have written itself, with no intervention before them)."""
        if self.plan.same_vocab:
            agreed = common_prefix(span.ids, [d.choice.id for d in drafts])
            whole = agreed == len(span.ids)
        else:
            agreed, whole = self._text_agreement(span.text, drafts)
        if not whole or span.eos:
            return agreed, 0
        extras = 0
        room = self.plan.max_tokens - self.written - len(span.ids)
        for draft in drafts[agreed:]:
            if extras >= room or self._consult(draft.before, len(span.ids) + extras):
                break
            extras += 1
            if draft.choice.id in self.plan.small_eos:
                break
        return agreed, extras

    def _text_agreement(self, text: str, drafts: list[Draft]) -> tuple[int, bool]:
        ids: list[int] = []
        agreed, spelled = 0, ""
        for draft in drafts:
            ids.append(draft.choice.id)
            before, spelled = spelled, self._draft_text(ids)
            # a token that adds no text (end of sequence, a special token) agrees with nothing
            if len(spelled) == len(before) or not text.startswith(spelled):
                break
            agreed = len(ids)
            if spelled == text:
                return agreed, True
        return agreed, False

    def _draft_text(self, ids: list[int]) -> str:
        """The text the small model's own `ids` would add after what is written."""
        return self._small().text.after(ids)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
