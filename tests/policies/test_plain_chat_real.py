"""Gemma-3-270M, a base model, answers in chat form instead of writing the question back: alone
(`direct` serves the backend's chat) and as the collab policy's large model, which reads the
conversation in the same rendering. Two prompts, 8 greedy tokens each (~2 s a reply here)."""

from __future__ import annotations

import pytest

from gateway.backends.local import LocalBackend
from gateway.core.events import Delta
from gateway.core.plain_chat import PLAIN_CHATS
from gateway.core.protocol import ChatCompletionRequest
from tests.policies.conftest import run_collab

# the first two examples of BIG-bench's qa_wikidata task (Apache-2.0, the `bigbench` 1.0.0
# package on PyPI), copied so that the test needs not the 1.8 GB package
PROMPTS = [
    'The genre of "Weird Al" Yankovic is',
    "The language of (I Can't Get No) Satisfaction is",
]


def first_line(text: str) -> str:
    return text.lstrip().split("\n")[0].lower()


async def alone(gemma3: LocalBackend, prompt: str) -> str:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8}
    request = ChatCompletionRequest.model_validate({**body, "temperature": 0})
    return "".join([e.text async for e in gemma3.chat(request) if isinstance(e, Delta)])


@pytest.mark.parametrize("prompt", PROMPTS)
async def test_gemma3_in_chat_answers_instead_of_repeating_the_question(
    real_pair: list[LocalBackend], prompt: str
) -> None:
    smollm2, gemma3 = real_pair
    reply = await alone(gemma3, prompt)
    assert first_line(reply)  # it answered something on the reply's first line
    assert not first_line(reply).startswith(prompt.lower()[:12])
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
        replies = [await alone(gemma3, prompt) for prompt in PROMPTS]
    finally:
        gemma3.plain_chat = default
    assert all(
        first_line(r).startswith(p.lower()[:12]) for r, p in zip(replies, PROMPTS, strict=True)
    )
