"""Two vocabularies for real: SmolLM2-135M-Instruct writes, Gemma-3-270M steps in, text crosses
the seam and is re-tokenised on each side. Short answers: Gemma costs ~80 ms a token here."""

from __future__ import annotations

from gateway.backends.local import LocalBackend
from gateway.backends.sessions import Stop
from gateway.core.protocol import ChatCompletionRequest
from gateway.core.tokens import chat_prompt, encode_prompt
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
