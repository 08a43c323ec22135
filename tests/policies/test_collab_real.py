"""Two vocabularies for real: SmolLM2-135M-Instruct writes, Gemma-3-270M steps in, text crosses
the seam and is re-tokenised on each side. Short answers: Gemma costs ~80 ms a token here."""

from __future__ import annotations

import pytest

from gateway.api.learned_routers import catalog_routers
from gateway.backends.local import LocalBackend
from gateway.backends.sessions import Stop
from gateway.core.config import Settings, load_catalog
from gateway.core.protocol import ChatCompletionRequest
from gateway.core.tokens import chat_prompt, encode_prompt
from gateway.policies import ParamError
from gateway.policies.collab import CollabPolicy
from gateway.policies.collab_loop import SPAN_ENDS
from tests.policies.conftest import QUESTION, run_collab
from tests.policies.fakes import scripted

MIXED = {"trigger": "entropy", "threshold": 0.8}  # SmolLM2 is unsure of about a third of these


async def test_always_writes_what_the_large_model_writes_alone(
    real_pair: list[LocalBackend],
) -> None:
    smollm2, gemma3 = real_pair
    out = await run_collab(smollm2, gemma3, {"trigger": "always"}, max_tokens=8)
    messages = ChatCompletionRequest.model_validate({"model": "m", "messages": QUESTION}).messages
    prompt = encode_prompt(
        gemma3.tokenizer, chat_prompt(gemma3.tokenizer, messages), templated=False
    )
    async with await gemma3.open_session(prompt) as session:
        span = await session.generate(8, Stop(ids=gemma3.eos_ids))
    expected = gemma3.tokenizer.decode(span.ids, skip_special_tokens=True)
    assert out.extra["vocabulary"] == "text"
    assert expected.startswith(out.text())  # equal, unless a stop of its rendering cut it
    assert out.text()
    assert out.report.tokens["small"] == 0


async def test_each_model_reads_exactly_the_text_written(real_pair: list[LocalBackend]) -> None:
    smollm2, gemma3 = real_pair
    small, large = scripted(smollm2), scripted(gemma3)
    out = await run_collab(small, large, MIXED, max_tokens=16)
    text = out.text()
    assert {d.source for d in out.deltas} == {"small", "large"}
    small_ids = small.script.sessions[0].ids[len(small.script.appended[0]) :]
    large_ids = large.script.sessions[0].ids[len(large.script.appended[0]) :]
    views = sorted(
        [
            smollm2.tokenizer.decode(small_ids, skip_special_tokens=True),
            gemma3.tokenizer.decode(large_ids, skip_special_tokens=True),
        ],
        key=len,
    )
    # one model may not have seen the other's last token; neither saw other characters
    assert views[1].startswith(views[0])
    assert views[0].startswith(text) or text.startswith(views[0])
    # past the streamed text, only the start of a stop string held back and cut
    held = views[1][len(text) :]
    assert any(stop.startswith(held) for stop in gemma3.plain_chat.stops)
    # the large model was handed only what was new, in its own vocabulary
    assert large.script.opened == 1
    assert sum(map(len, large.script.appended)) + out.report.tokens["large"] == len(
        large.script.sessions[0].ids
    )


async def test_drafting_across_vocabularies_keeps_the_text(real_pair: list[LocalBackend]) -> None:
    smollm2, gemma3 = real_pair
    remote = scripted(gemma3, delay=0.05)
    plain = await run_collab(smollm2, remote, {**MIXED, "draft": 0}, max_tokens=12)
    drafted = await run_collab(smollm2, remote, {**MIXED, "draft": 4}, max_tokens=12)
    assert drafted.text() == plain.text()
    assert drafted.report.tokens == plain.report.tokens
    assert drafted.extra["drafted"] > 0


async def test_spans_can_end_at_punctuation(real_pair: list[LocalBackend]) -> None:
    smollm2, gemma3 = real_pair
    whole = await run_collab(smollm2, gemma3, {"trigger": "always", "span": 32}, max_tokens=12)
    cut = await run_collab(
        smollm2, gemma3, {"trigger": "always", "span": 32, "span_stop": True}, max_tokens=12
    )
    assert whole.report.interventions == 1
    assert cut.text() == whole.text()  # the large model goes on in the next intervention
    # a span ends at punctuation or a newline; the answer has one before its last token
    assert any(c in whole.text()[:-1] for c in SPAN_ENDS)
    assert cut.report.interventions > 1


async def test_the_shipped_router_fits_the_real_pair(real_pair: list[LocalBackend]) -> None:
    """The default catalog's router passes the start-up check on the real pair (tokenizer
    fingerprints, features the small model gives) and routes: asked for 30% of the tokens, the
    large model writes some and not all of them."""
    smollm2, gemma3 = real_pair
    routers = catalog_routers(load_catalog(Settings()).routers, str(Settings().catalog_path()))
    policy = CollabPolicy("collab", {"small": smollm2, "large": gemma3}, routers)
    params = {"trigger": "learned", "router": "default-pair", "upload_target": 0.3}
    await policy.check_started(policy.parse_params(params))
    out = await run_collab(smollm2, gemma3, params, policy=policy, max_tokens=12)
    assert out.extra["trigger"] == "learned"
    assert 0 < out.report.tokens["large"] < sum(out.report.tokens.values())


async def test_a_router_for_another_pair_is_refused_at_start_up(
    real_pair: list[LocalBackend],
) -> None:
    smollm2, gemma3 = real_pair
    routers = catalog_routers(load_catalog(Settings()).routers, str(Settings().catalog_path()))
    swapped = CollabPolicy("collab", {"small": gemma3, "large": smollm2}, routers)
    params = swapped.parse_params({"trigger": "learned", "router": "default-pair"})
    with pytest.raises(ParamError, match="trained for another pair"):
        await swapped.check_started(params)
