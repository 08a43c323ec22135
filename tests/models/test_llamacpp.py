"""Token sessions on llama.cpp (SmolLM2's and Gemma 3's packaged GGUFs, served as they are)."""

from __future__ import annotations

import asyncio
import math
import os
import statistics
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.models.conftest import LLAMA_CPP_MISSING, started

pytest.importorskip("llama_cpp", reason=LLAMA_CPP_MISSING)

from llama_cpp import Llama

from gateway.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from gateway.backends.local import LocalBackend
from gateway.backends.sessions import Stop
from gateway.backends.transformers import TransformersBackend, TransformersConfig
from gateway.core.errors import Overloaded
from gateway.core.tokens import fingerprint, has_chat_template
from gateway.models.gguf_file import gguf_file
from gateway.policies.rewind import can_rewind, rewind

STORY = [{"role": "user", "content": "Write a long story about a brave little dragon."}]
TEXT = "The quick brown fox jumps over the lazy dog. Paris is the capital of"
#: transformers runs the GGUF's Q4_1 weights dequantised to fp32; llama.cpp multiplies them as
#: they are, with activations quantised to 8 bits and an fp16 KV cache. Over the 14 positions
#: of TEXT (and 51 of a longer text) the top-5 log-probs differed by 0.06-0.09 at the median and
#: 0.57 at worst (a fifth-ranked token of a flat distribution), the chosen tokens' by 0.36 at
#: worst. The bounds leave about a third more; a real bug (a wrong position, a lost KV cell, an
#: unnormalised row) moves the median past 1.
QUANT_WORST = 0.75
QUANT_MEDIAN = 0.15
SAME = 1e-4


def story_ids(backend: LocalBackend) -> list[int]:
    text = backend.tokenizer.apply_chat_template(STORY, add_generation_prompt=True, tokenize=False)
    return backend.tokenizer.encode(text, add_special_tokens=False)


@pytest.fixture(scope="module")
def torch_smollm2() -> Iterator[LocalBackend]:
    config = TransformersConfig(model="smollm2-135m", threads=1, prefix_cache=0)
    yield from started(TransformersBackend("torch-smollm2", config))


@pytest.fixture(scope="module")
def llama_gemma3() -> Iterator[LocalBackend]:
    config = LlamaCppConfig(model="gemma3-270m", threads=1, prefix_cache=0)
    yield from started(LlamaCppBackend("llama-gemma3", config))


def reference_greedy(model: str, prompt: list[int], count: int) -> list[int]:
    """llama.cpp's own generation (its `Llama` class and greedy sampler) on the same GGUF."""
    llm = Llama(str(gguf_file(model)), n_ctx=512, n_threads=1, verbose=False)
    try:
        return list(islice(llm.generate(prompt, temp=0.0), count))
    finally:
        llm.close()


@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
async def test_32_greedy_tokens_equal_llama_cpps_own_generation(
    model: str, llama_smollm2: LocalBackend, llama_gemma3: LocalBackend
) -> None:
    backend = llama_smollm2 if model == "smollm2-135m" else llama_gemma3
    templated = has_chat_template(backend.tokenizer)
    prompt = story_ids(backend) if templated else backend.tokenizer.encode(TEXT)
    async with await backend.open_session(prompt) as session:
        span = await session.generate(32)
    assert len(span.ids) == 32
    assert span.ids == await asyncio.to_thread(reference_greedy, model, prompt, 32)


async def test_vocabulary_tokens_and_chat_prompt_equal_transformers(
    llama_smollm2: LocalBackend, torch_smollm2: LocalBackend
) -> None:
    ours, theirs = llama_smollm2.tokenizer, torch_smollm2.tokenizer
    assert llama_smollm2.fingerprint == torch_smollm2.fingerprint
    for text in (TEXT, "  two  spaces, émoji 🐉 and 中文\n\nlines", "<|im_start|>user\nhi"):
        ids = theirs.encode(text)
        assert ours.encode(text) == ids
        assert ours.decode(ids) == theirs.decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(
            ids, skip_special_tokens=True
        )
    rendered = [
        t.apply_chat_template(STORY, add_generation_prompt=True, tokenize=False)
        for t in (ours, theirs)
    ]
    assert rendered[0] == rendered[1]
    assert llama_smollm2.eos_ids >= torch_smollm2.eos_ids


def test_gemma3_vocabulary_fingerprint_equals_transformers(llama_gemma3: LocalBackend) -> None:
    from transformers import AutoTokenizer

    from gateway.models import prepare

    theirs = AutoTokenizer.from_pretrained(prepare("gemma3-270m").location)
    assert llama_gemma3.fingerprint == fingerprint(theirs)
    ids = theirs.encode(TEXT)
    assert llama_gemma3.tokenizer.encode(TEXT) == ids
    assert llama_gemma3.tokenizer.decode(ids) == theirs.decode(ids)


async def test_top5_logprobs_and_entropy_agree_with_transformers(
    llama_smollm2: LocalBackend, torch_smollm2: LocalBackend
) -> None:
    ids = torch_smollm2.tokenizer.encode(TEXT)
    async with await llama_smollm2.open_session(ids[:1]) as session:
        ours = await session.score(ids[1:], k=5)
        our_next = await session.next_distribution(5)
    async with await torch_smollm2.open_session(ids[:1]) as session:
        theirs = await session.score(ids[1:], k=5)
        their_next = await session.next_distribution(5)
    gaps = []
    for a, b in zip(ours, theirs, strict=True):
        gaps.append(abs(a.logprob - b.logprob))
        top_a, top_b = dict(a.top), dict(b.top)
        gaps += [abs(top_a[token] - top_b[token]) for token in set(top_a) & set(top_b)]
        assert len(set(top_a) & set(top_b)) >= 4  # the fifth may swap with the sixth
    assert max(gaps) < QUANT_WORST
    assert statistics.median(gaps) < QUANT_MEDIAN
    assert our_next.ids[0] == their_next.ids[0]
    assert our_next.entropy == pytest.approx(their_next.entropy, abs=QUANT_MEDIAN)


def llama_cpp_logprobs(ids: list[int], walk_from: int | None = None) -> list[float]:
    """Each token's log-prob from llama.cpp's own `Llama.eval`: the text in one batch, or its
    first `walk_from` tokens and then one token per call (the two take different kernels and
    differ by up to 0.34 here, in llama.cpp itself)."""
    llm = Llama(
        str(gguf_file("smollm2-135m")), n_ctx=512, n_threads=1, logits_all=True, verbose=False
    )
    try:
        if walk_from is None:
            llm.eval(ids)
        else:
            llm.eval(ids[:walk_from])
            for token in ids[walk_from:]:
                llm.eval([token])
        logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
    shifted = logits - logits.max(axis=1, keepdims=True)
    rows = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return [float(rows[n, token]) for n, token in enumerate(ids[1:])]


async def test_scores_and_step_by_step_walks_equal_llama_cpps_own(
    llama_smollm2: LocalBackend,
) -> None:
    ids = llama_smollm2.tokenizer.encode(TEXT)
    async with await llama_smollm2.open_session(ids[:1]) as scorer:
        scores = await scorer.score(ids[1:], k=2)
    assert [s.id for s in scores] == ids[1:]
    assert all(len(s.top) == 2 and s.top[0][1] >= s.logprob for s in scores)
    expected = await asyncio.to_thread(llama_cpp_logprobs, ids)
    assert [s.logprob for s in scores] == pytest.approx(expected, abs=SAME)
    walked = []
    async with await llama_smollm2.open_session(ids[:3]) as walker:
        for token in ids[3:]:
            dist = await walker.next_distribution(60_000)
            walked.append(dist.logprobs[dist.ids.index(token)])
            assert sum(math.exp(lp) for lp in dist.logprobs) == pytest.approx(1.0, abs=1e-3)
            assert 0 < dist.entropy <= math.log(len(dist.ids))
            await walker.append([token])
    expected = await asyncio.to_thread(llama_cpp_logprobs, ids, 3)
    assert walked == pytest.approx(expected[2:], abs=SAME)


async def test_drafting_with_rewinds_gives_the_same_greedy_text(
    llama_smollm2: LocalBackend,
) -> None:
    prompt = story_ids(llama_smollm2)
    async with await llama_smollm2.open_session(prompt) as plain:
        expected = (await plain.generate(24)).ids
    async with await llama_smollm2.open_session(prompt) as drafter:
        assert can_rewind(drafter)
        while len(drafter.ids) < len(prompt) + 24:
            base = len(drafter.ids)
            for _ in range(3):  # drafts the large model then rejects all but the first
                await drafter.step()
            await drafter.next_distribution(1)  # the drafts reach the KV cache
            await rewind(drafter, base + 1)
            # a wrong token appended and taken back leaves no trace either
            await rewind(drafter, base + 1, [expected[0] + 1])
            await drafter.next_distribution(1)
            await rewind(drafter, base + 1)
    assert drafter.ids[len(prompt) : len(prompt) + 24] == expected


async def test_concurrent_sessions_each_give_their_own_greedy_text(
    llama_smollm2: LocalBackend,
) -> None:
    encode = llama_smollm2.tokenizer.encode
    prompts = [encode(t) for t in (TEXT, "Once upon a time", "def fib(n):", "1, 2, 3, 4,")]

    async def greedy(prompt: list[int]) -> list[int]:
        async with await llama_smollm2.open_session(prompt) as session:
            return (await session.generate(16)).ids

    alone = [await greedy(p) for p in prompts]
    together = await asyncio.gather(*(greedy(p) for p in prompts))
    assert together == alone
    assert len({tuple(ids) for ids in alone}) == len(prompts)


async def test_hidden_state_is_the_final_norm_output_transformers_gives(
    llama_smollm2: LocalBackend, torch_smollm2: LocalBackend
) -> None:
    ids = llama_smollm2.tokenizer.encode(TEXT)
    async with await llama_smollm2.open_session(ids, hidden=True) as session:
        ours = (await session.next_distribution(1)).hidden
        await session.append(ids[:2])
        moved = (await session.next_distribution(1)).hidden
    async with await llama_smollm2.open_session(ids, hidden=True) as session:
        await session.score(ids[:2])  # the same sequence, read by scoring
        scored = (await session.next_distribution(1)).hidden
    async with await torch_smollm2.open_session(ids, hidden=True) as session:
        theirs = (await session.next_distribution(1)).hidden
    assert ours is not None
    assert theirs is not None
    assert moved is not None
    assert len(ours) == len(theirs) == 576
    assert cosine(ours, theirs) > 0.98
    assert cosine(ours, moved) < 0.98  # it follows the sequence
    assert scored is not None
    assert cosine(scored, moved) > 0.999


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def test_a_full_backend_refuses_more_sequences_with_a_clear_error(
    llama_smollm2: LocalBackend,
) -> None:
    config = LlamaCppConfig(model="smollm2-135m", threads=1, sessions=2, context=128)
    backend: Any = LlamaCppBackend("small", config)
    await backend.start()
    try:
        ids = llama_smollm2.tokenizer.encode(TEXT)
        first, second = await backend.open_session(ids), await backend.open_session(ids)
        await first.next_distribution(1)
        await second.next_distribution(1)
        third = await backend.open_session(ids)
        with pytest.raises(Overloaded, match="sessions"):
            await third.next_distribution(1)
        await third.close()
        await first.close()  # pooled: a new sequence takes its cells back under pressure
        again = await backend.open_session(ids[:3])
        await again.next_distribution(1)
        await second.close()
        await again.close()
        long = await backend.open_session(ids * 20)  # 340 tokens in a 128-cell cache
        with pytest.raises(Overloaded, match="context"):
            await long.next_distribution(1)
        await long.close()
    finally:
        await backend.aclose()


async def test_a_gguf_path_is_served_as_it_is_without_preparing_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llama_smollm2: LocalBackend
) -> None:
    config = LlamaCppConfig(model=str(gguf_file("smollm2-135m")), threads=1)
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    backend = LlamaCppBackend("path", config)
    await backend.start()
    try:
        prompt = backend.tokenizer.encode(TEXT)
        async with await backend.open_session(prompt) as session:
            span = await session.generate(8, Stop(ids=backend.eos_ids))
    finally:
        await backend.aclose()
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - no converted folder, no copy
    async with await llama_smollm2.open_session(prompt) as session:
        assert span.ids == (await session.generate(8, Stop(ids=llama_smollm2.eos_ids))).ids


def test_a_model_folder_is_refused_with_what_to_give_instead(smollm2_folder: Path) -> None:
    from gateway.models import ModelError

    with pytest.raises(ModelError, match=r"\.gguf file or a packaged model"):
        gguf_file(str(smollm2_folder))


async def test_collab_drafting_on_llama_cpp_changes_the_time_not_the_text(
    llama_smollm2: LocalBackend, torch_smollm2: LocalBackend
) -> None:
    """The small model on llama.cpp drafts while a slow large model (SmolLM2 on transformers:
    the same vocabulary, so token ids cross) works; its rewinds leave the text as it was."""
    from tests.policies.conftest import run_collab
    from tests.policies.fakes import scripted

    slow = scripted(torch_smollm2, delay=0.05)
    sometimes = {"trigger": "entropy", "threshold": 1.0}
    plain = await run_collab(llama_smollm2, slow, {**sometimes, "draft": 0}, max_tokens=24)
    drafted = await run_collab(llama_smollm2, slow, {**sometimes, "draft": 4}, max_tokens=24)
    assert plain.extra["vocabulary"] == "shared"
    assert 0 < plain.report.interventions < 24
    assert drafted.extra["drafted"] > 0
    assert drafted.text() == plain.text()
    assert drafted.report.tokens == plain.report.tokens


async def test_a_prompt_extending_a_pooled_sequence_reads_only_its_new_tokens() -> None:
    config = LlamaCppConfig(model="smollm2-135m", threads=1, prefix_cache=2)
    backend: Any = LlamaCppBackend("pooled", config)
    await backend.start()
    try:
        prompt = backend.tokenizer.encode(TEXT)
        async with await backend.open_session(prompt) as whole:
            expected = (await whole.generate(16)).ids
        async with await backend.open_session(prompt) as first:
            head = (await first.generate(8)).ids
        await backend.worker.run(lambda: None)  # the closed session's core reaches the pool
        session = await backend.open_session(prompt + head)
        assert backend.prefix_pool.hits == 1
        assert session._pending == head[-1:]  # the pooled cells hold all but the last token
        async with session:
            tail = (await session.generate(8)).ids
    finally:
        await backend.aclose()
    assert head + tail == expected


def test_threads_default_to_the_physical_cores_not_llama_cpps_four() -> None:
    """llama-cpp-python's own default (4 threads) on a 2-core machine made every step twice as
    slow as one thread: an unset `threads` is the cores the process may use, hyper-threads once."""
    from gateway.backends.llamacpp import context_params, physical_cores

    siblings = {
        Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text()
        for cpu in os.sched_getaffinity(0)
    }
    assert physical_cores() == len(siblings)
    llm = Llama(str(gguf_file("smollm2-135m")), n_ctx=64, vocab_only=True, verbose=False)
    unset = context_params(LlamaCppConfig(model="smollm2-135m"), llm.model)
    assert (unset.n_threads, unset.n_threads_batch) == (len(siblings), len(siblings))
    assert context_params(LlamaCppConfig(model="smollm2-135m", threads=3), llm.model).n_threads == 3
