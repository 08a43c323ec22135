"""Does a remote model share a local tokenizer's vocabulary? Ask it, rather than assume.

Token ids cross the seam between two models only when both read them alike. A remote large
model (vLLM's server, another Tandem) is asked to tokenise probe strings: its `/v1/completions`
echoes a prompt's tokens as `token_id:N` (vLLM's `return_tokens_as_token_ids`), and they must
equal the local tokenizer's ids for every probe. The probes cover what vocabularies disagree on:
leading spaces, digits, accents, CJK, emoji, code and white space.
"""

from __future__ import annotations

from gateway.backends.openai_http import OpenAIBackend
from gateway.backends.openai_sessions import Remote
from gateway.core.tokens import HFTokenizer

PROBES = (
    "Hello, world!",
    " The quick brown fox jumps over the lazy dog.",
    "naïve café, Zürich 1234567890",
    "東京とソウル 🙂 ÷ ∑",
    "def f(x):\n\treturn x + 1  # done",
)


async def remote_ids(backend: OpenAIBackend, text: str) -> list[int]:
    """The remote's tokens for `text` as it reads a prompt (special tokens included)."""
    payload = {"prompt": text, "max_tokens": 1, "echo": True, "logprobs": 0, "temperature": 0}
    done = await Remote(backend).complete(payload)
    return [token.id for token in done.tokens][:-1]  # the last one is the generated token


async def vocabulary_mismatch(backend: OpenAIBackend, tokenizer: HFTokenizer) -> str | None:
    """None when every probe tokenises alike on both sides, else what differed. Raises the
    backend's `UpstreamError` when it cannot be asked."""
    for probe in PROBES:
        here = list(tokenizer.encode(probe))
        there = await remote_ids(backend, probe)
        if here != there:
            return (
                f"backend '{backend.name}' tokenises {probe!r} as {there[:12]}, the tokenizer "
                f"the gateway has for it as {here[:12]}: their vocabularies differ"
            )
    return None
