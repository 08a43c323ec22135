"""Gemma-3-270M, a base model, answers in chat form instead of writing the question back: alone
(`direct` serves the backend's chat) and as the collab policy's large model, which reads the
conversation in the same rendering. The first two prompts of BIG-bench's qa_wikidata task (the
`bigbench` package), 8 greedy tokens each (~2 s a reply here)."""

from __future__ import annotations

import functools
import json

import pytest

from gateway.backends.local import LocalBackend
from gateway.core.events import Delta
from gateway.core.plain_chat import PLAIN_CHATS
from gateway.core.protocol import ChatCompletionRequest
from gateway.training.prompts import bigbench_tasks
from tests.policies.conftest import run_collab


@functools.cache
def prompts() -> list[str]:
    task = json.loads((bigbench_tasks() / "qa_wikidata" / "task.json").read_text())
    return [str(example["input"]) for example in task["examples"][:2]]


def first_line(text: str) -> str:
    return text.lstrip().split("\n")[0].lower()


def echoes(reply: str, prompt: str) -> bool:
    return first_line(reply).startswith(prompt.lower()[:12])


async def alone(gemma3: LocalBackend, prompt: str) -> str:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8}
    request = ChatCompletionRequest.model_validate({**body, "temperature": 0})
    return "".join([e.text async for e in gemma3.chat(request) if isinstance(e, Delta)])


@pytest.mark.parametrize("index", [0, 1])
async def test_gemma3_in_chat_answers_instead_of_repeating_the_question(
    real_pair: list[LocalBackend], index: int
) -> None:
    smollm2, gemma3 = real_pair
    prompt = prompts()[index]
    reply = await alone(gemma3, prompt)
    assert first_line(reply)  # it answered something on the reply's first line
    assert not echoes(reply, prompt)
    messages = [{"role": "user", "content": prompt}]
    collab = await run_collab(
        smollm2, gemma3, {"trigger": "always"}, messages=messages, max_tokens=8
    )
    assert collab.text() == reply  # the seam renders the conversation as `direct` does


async def test_the_transcript_rendering_wrote_the_question_back(
    real_pair: list[LocalBackend],
) -> None:
    """What the test above guards against: the original `user:`/`assistant:` transcript."""
    gemma3 = real_pair[1]
    default, gemma3.plain_chat = gemma3.plain_chat, PLAIN_CHATS["transcript"]
    try:
        replies = [await alone(gemma3, prompt) for prompt in prompts()]
    finally:
        gemma3.plain_chat = default
    assert all(echoes(r, p) for r, p in zip(replies, prompts(), strict=True))
