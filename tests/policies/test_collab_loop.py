"""The collab loop on two tiny models that share SmolLM2's vocabulary (token ids exchanged)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway.backends.local import LocalBackend
from gateway.backends.sessions import Stop
from gateway.core.errors import UnsupportedField
from gateway.core.protocol import ChatCompletionRequest, CompletionRequest
from gateway.core.tokens import chat_prompt, encode_prompt
from gateway.policies.collab import CollabPolicy
from gateway.policies.router_spec import Router
from tests.policies.conftest import QUESTION, Outcome, collab, run_collab
from tests.policies.fakes import scripted

SOMETIMES = {"trigger": "entropy", "threshold": 4.5}  # fires on some of the tiny model's tokens


def prompt_ids(backend: LocalBackend) -> list[int]:
    messages = ChatCompletionRequest.model_validate({"model": "m", "messages": QUESTION}).messages
    return encode_prompt(
        backend.tokenizer, chat_prompt(backend.tokenizer, messages), templated=True
    )


async def alone(backend: LocalBackend, max_tokens: int = 16) -> str:
    async with await backend.open_session(prompt_ids(backend)) as session:
        span = await session.generate(max_tokens, Stop(ids=backend.eos_ids))
    return backend.tokenizer.decode(span.ids, skip_special_tokens=True)


async def test_never_is_the_small_model_alone(tiny_pair: list[LocalBackend]) -> None:
    small, large, _ = tiny_pair
    out = await run_collab(small, large, {"trigger": "never"})
    assert out.text() == await alone(small)
    assert out.report.tokens == {"small": 16, "large": 0}
    assert out.report.interventions == 0
    assert {d.source for d in out.deltas} == {"small"}
    assert out.usage.completion_tokens == 16
    assert out.finishes[0].reason == "length"


async def test_always_is_the_large_model_alone(tiny_pair: list[LocalBackend]) -> None:
    small, large, _ = tiny_pair
    out = await run_collab(small, large, {"trigger": "always"})
    assert out.text() == await alone(large)
    assert out.report.tokens == {"small": 0, "large": 16}
    assert out.report.interventions == 16
    assert out.report.to_wire()["upload_ratio"] == 1.0
    assert out.extra["vocabulary"] == "shared"


async def test_a_trigger_that_fires_sometimes_mixes_both_models(
    tiny_pair: list[LocalBackend],
) -> None:
    small, large, _ = tiny_pair
    out = await run_collab(small, large, SOMETIMES, max_tokens=24)
    wire = out.report.to_wire()
    assert 0 < wire["tokens"]["large"] < 24
    assert wire["tokens"]["small"] + wire["tokens"]["large"] == out.usage.completion_tokens == 24
    assert wire["upload_ratio"] == round(wire["tokens"]["large"] / 24, 4)
    assert out.report.interventions == wire["tokens"]["large"]  # span 1
    assert len(out.report.large_call_seconds) == out.report.interventions
    assert {d.source for d in out.deltas} == {"small", "large"}
    assert out.text() not in (await alone(small, 24), await alone(large, 24))


async def test_a_learned_router_sees_each_tokens_position(
    tiny_pair: list[LocalBackend],
) -> None:
    """A router over the position alone, firing on the answer's first two tokens: the large
    model writes those two, in order, and the small model the rest; drafting (which consults
    the trigger about tokens past a large span) gives the same split."""
    small, large, _ = tiny_pair
    weights = [[9.0, 9.0, 0.0, 0.0]]  # one-hot position: first, second, third, later
    spec = {"inputs": ["position"], "layers": [{"weight": weights, "bias": [-4.5]}]}
    policy = CollabPolicy("collab", {"small": small, "large": large}, {"first": Router(spec)})
    for draft in (0, 4):
        params = {"trigger": "learned", "router": "first", "draft": draft}
        out = await run_collab(small, large, params, policy=policy)
        assert out.report.tokens == {"small": 14, "large": 2}
        sources = [d.source for d in out.deltas]
        handed_back = sources.index("small")
        assert sources[0] == "large"
        assert "large" not in sources[handed_back:]


async def test_drafting_changes_the_time_not_the_text(tiny_pair: list[LocalBackend]) -> None:
    small, large, _ = tiny_pair
    slow = scripted(large, delay=0.03)  # the small model drafts while the large one "travels"
    plain = await run_collab(small, slow, {**SOMETIMES, "draft": 0}, max_tokens=24)
    drafted = await run_collab(small, slow, {**SOMETIMES, "draft": 4}, max_tokens=24)
    assert drafted.text() == plain.text()
    assert drafted.report.tokens == plain.report.tokens
    assert [d.source for d in drafted.deltas] == [d.source for d in plain.deltas]
    assert plain.extra["drafted"] == 0
    assert drafted.extra["drafted"] > 0


async def test_drafts_the_large_model_confirms_are_kept(tiny_pair: list[LocalBackend]) -> None:
    small, _, twin = tiny_pair  # twin: the small model's weights, so every draft agrees
    slow_twin = scripted(twin, delay=0.05)
    out = await run_collab(small, slow_twin, {**SOMETIMES, "draft": 4}, max_tokens=24)
    assert out.text() == await alone(small, 24)
    assert out.report.interventions > 0
    # each intervention keeps its agreeing draft, plus drafts after it the trigger passes
    assert out.extra["draft_kept"] > out.report.interventions
    assert out.report.tokens["large"] == out.report.interventions


async def test_each_token_reaches_each_model_once(tiny_pair: list[LocalBackend]) -> None:
    small, large, _ = tiny_pair
    small_spy, large_spy = scripted(small), scripted(large)
    out = await run_collab(small_spy, large_spy, SOMETIMES, max_tokens=24)
    assert small_spy.script.opened == large_spy.script.opened == 1
    # the small model appends its own greedy tokens too (lazily); the large one steps
    small_handed = sum(len(ids) for ids in small_spy.script.appended)
    assert small_handed == len(small_spy.script.sessions[0].ids)
    large_handed = sum(len(ids) for ids in large_spy.script.appended)
    written = out.report.tokens["large"]
    assert large_handed + written == len(large_spy.script.sessions[0].ids)
    # one vocabulary: both sessions hold the same sequence, up to the large one's last look
    small_ids, large_ids = (s.script.sessions[0].ids for s in (small_spy, large_spy))
    assert large_ids == small_ids[: len(large_ids)]


async def test_spans_of_several_large_tokens(tiny_pair: list[LocalBackend]) -> None:
    small, large, _ = tiny_pair
    out = await run_collab(small, large, {"trigger": "always", "span": 4})
    assert out.report.interventions == 4
    assert out.report.tokens == {"small": 0, "large": 16}
    assert out.text() == await alone(large)


async def test_stop_applies_to_the_combined_text(tiny_pair: list[LocalBackend]) -> None:
    small, large, _ = tiny_pair
    whole = await run_collab(small, large, SOMETIMES, max_tokens=24)
    stop = seam_stop(whole.deltas)
    cut = await run_collab(small, large, SOMETIMES, max_tokens=24, stop=[stop])
    assert cut.text() == whole.text()[: whole.text().index(stop)]
    assert cut.finishes[0].reason == "stop"


def seam_stop(deltas: list[Any]) -> str:
    """A stop string that starts in a small delta and ends in the large one after it."""
    for first, second in itertools.pairwise(deltas):
        if first.source != second.source and first.text and second.text:
            return first.text[-1] + second.text[0]
    raise AssertionError("no seam between two sources")


async def test_seed_reproduces_sampling_and_n_gives_distinct_choices(
    tiny_pair: list[LocalBackend],
) -> None:
    small, large, _ = tiny_pair
    request: dict[str, Any] = {"temperature": 1.0, "top_p": 0.9, "seed": 7}
    one = await run_collab(small, large, SOMETIMES, **request)
    again = await run_collab(small, large, SOMETIMES, **request)
    both = await run_collab(small, large, SOMETIMES, n=2, **request)
    assert one.text() == again.text()
    assert both.text(0) == one.text()
    assert both.text(1) != both.text(0)
    assert [f.index for f in both.finishes] == [0, 1]
    assert both.usage.completion_tokens == 32
    greedy = await run_collab(small, large, SOMETIMES)
    assert greedy.text() != one.text()


async def test_legacy_completion_with_a_text_prompt(tiny_pair: list[LocalBackend]) -> None:
    small, large, _ = tiny_pair
    policy = collab(small, large)
    request = CompletionRequest.model_validate(
        {"model": "collab", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
    )
    events = [e async for e in policy.complete(request, policy.parse_params(SOMETIMES))]
    out = Outcome(events)
    assert out.usage.completion_tokens == 8
    assert out.usage.prompt_tokens == len(small.tokenizer.encode("The capital of France is"))
    assert out.text()
    with pytest.raises(UnsupportedField):
        policy.complete(
            CompletionRequest.model_validate({"model": "c", "prompt": "x", "echo": True}),
            policy.parse_params({}),
        )
