"""The context-window check every policy makes, for every model it will run, before any work
starts: a prompt plus the tokens it may generate must fit the model's window.

A backend tells its window (`Backend.context_window`: local runtimes know it, an HTTP backend
declares it in the catalog or is not checked). The policy counts the prompt in the model's own
tokens, or a lower bound of them where it has no tokenizer for that model, so a request that
fits is never refused.
"""

from __future__ import annotations

from gateway.core.errors import InvalidRequest

CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"


def check_window(
    window: int | None, prompt_tokens: int, max_tokens: int, prompt_index: int = 0
) -> None:
    """Raise the 400 that names `max_tokens` when the prompt and its answer cannot fit;
    `window=None` (not known) passes."""
    if window is None or prompt_tokens + max_tokens <= window:
        return
    raise InvalidRequest(
        f"prompt {prompt_index} has {prompt_tokens} tokens; with max_tokens={max_tokens} it "
        f"exceeds the model's context of {window} tokens",
        param="max_tokens",
        code=CONTEXT_LENGTH_EXCEEDED,
    )


def tokens_at_least(texts: list[str], max_token_chars: int) -> int:
    """A lower bound of the tokens `texts` take in any vocabulary whose longest token has
    `max_token_chars` characters: one per text (each message costs at least its role marker),
    plus its characters over the longest token."""
    return sum(1 + len(text) // max_token_chars for text in texts)
