"""What a request may cost in tokens, estimated before it runs, for the token limit's
reservation (gateway/stores/ratelimit.py settles it to the real usage afterwards).

The prompt is counted as a quarter of its characters (token ids one each), which is close for
English with the usual tokenizers and needs no tokenizer here; the output as the request's
`max_tokens` (or the policy's own default, else `DEFAULT_OUTPUT`) for each of its `n` choices.
"""

from __future__ import annotations

from typing import Any

from gateway.core.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields

#: output tokens reserved when neither the request nor the policy bounds them
DEFAULT_OUTPUT = 256
CHARS_PER_TOKEN = 4


def prompt_estimate(body: SamplingFields) -> int:
    if isinstance(body, ChatCompletionRequest):
        chars = sum(len(message.text()) for message in body.messages)
        return -(-chars // CHARS_PER_TOKEN) + len(body.messages)
    if isinstance(body, CompletionRequest):
        total = 0
        for prompt in body.prompts():
            total += len(prompt) if isinstance(prompt, list) else -(-len(prompt) // CHARS_PER_TOKEN)
        return total
    return 0


def output_estimate(body: SamplingFields, params: Any) -> int:
    if isinstance(body, ChatCompletionRequest):
        limit = body.max_output_tokens
    elif isinstance(body, CompletionRequest):
        limit = body.max_tokens
        if limit is not None:
            return limit * body.n * len(body.prompts())
    else:
        limit = None
    if limit is None:
        limit = getattr(params, "max_tokens", None) or DEFAULT_OUTPUT
    return int(limit) * body.n
