"""The context-window check every policy makes, for every model it will run, before any work
starts: a prompt plus the tokens it may generate must fit the model's window.

A backend tells its window (`Backend.context_window`: local runtimes know it, an HTTP backend
declares it in the catalog or is not checked). The policy counts the prompt in the model's own
tokens. Before tokenising, which costs about 1.3 s of the event loop per million characters,
`check_window_early` refuses a prompt whose lower bound of tokens (its characters over the
vocabulary's longest token) is already too many; an HTTP model, which has no tokenizer here,
is checked on that bound alone. A bound never refuses a prompt that fits.
"""

from __future__ import annotations

from gateway.core.errors import InvalidRequest

CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"


def check_window(
    window: int | None,
    prompt_tokens: int,
    max_tokens: int,
    prompt_index: int = 0,
    *,
    at_least: bool = False,
) -> None:
    """Raise the 400 that names `max_tokens` when the prompt and its answer cannot fit;
    `window=None` (not known) passes. `at_least`: `prompt_tokens` is a lower bound."""
    if window is None or prompt_tokens + max_tokens <= window:
        return
    count = f"at least {prompt_tokens}" if at_least else str(prompt_tokens)
    raise InvalidRequest(
        f"prompt {prompt_index} has {count} tokens; with max_tokens={max_tokens} it "
        f"exceeds the model's context of {window} tokens",
        param="max_tokens",
        code=CONTEXT_LENGTH_EXCEEDED,
    )


def check_window_early(
    window: int | None,
    texts: list[str],
    max_token_chars: int | None,
    max_tokens: int,
    prompt_index: int = 0,
) -> None:
    """`check_window` on a lower bound of the tokens of `texts` (a prompt's messages)."""
    if window is None or max_token_chars is None:
        return
    bound = tokens_at_least(texts, max_token_chars)
    check_window(window, bound, max_tokens, prompt_index, at_least=True)


def tokens_at_least(texts: list[str], max_token_chars: int) -> int:
    """A lower bound of the tokens `texts` take in any vocabulary whose longest token has
    `max_token_chars` characters: one per text (each message costs at least its role marker),
    plus its characters over the longest token."""
    return sum(1 + len(text) // max_token_chars for text in texts)
