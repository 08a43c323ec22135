"""Cutting a token session back, for drafts the large model did not confirm.

The token-session contract has no truncation yet; this module knows the two session kinds that
can do it cheaply: HTTP sessions (the sequence lives on this side; the server's prefix cache
does the rest) and in-process sessions whose core keeps a cropable KV cache (transformers'
`DynamicCache`). Any other session reports that it cannot, and the policy does not draft on it.

A sliding-window cache layer (Gemma-3's) keeps only the last window of states: once a sequence
is past the window it cannot be cropped, and transformers refuses. Such a core is reset and reads
the kept sequence again from its start: slower, rare (a long answer with drafting), and the
answer goes on instead of dying mid-stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.backends.openai_sessions import HTTPTokenSession
from gateway.backends.sessions import ThreadedSession, TokenSession


def can_rewind(session: TokenSession) -> bool:
    if isinstance(session, HTTPTokenSession):
        return True
    if isinstance(session, ThreadedSession):
        cache = getattr(session._core, "cache", None)
        return callable(getattr(cache, "crop", None)) and hasattr(session._core, "last")
    return False


async def rewind(session: TokenSession, length: int, more: Sequence[int] = ()) -> None:
    """Keep the first `length` ids (never fewer than the prompt), then append `more`.

    In-process, the model reads the last kept id and `more` at once, in one forward pass, so a
    core never rests with a cache that its last output does not match."""
    if length >= len(session.ids):
        await session.append(more)
        return
    if isinstance(session, HTTPTokenSession):
        del session.ids[length:]
        session.ids.extend(more)
        return
    if not isinstance(session, ThreadedSession) or not can_rewind(session):
        raise TypeError(f"{type(session).__name__} cannot be rewound")
    core: Any = session._core
    read = len(session.ids) - len(session._pending)  # ids the core has run the model over
    keep = length - 1  # the last kept id is read again: its output is the next distribution
    ids = [*session.ids[:length], *more]
    if keep < read:
        again = ids[keep:]

        def crop() -> None:
            try:
                # transformers 5 crops by a negative count of tokens to remove
                core.cache.crop(keep - core.cache.get_seq_length())
            except (RuntimeError, ValueError):
                refill(core, ids[:keep])
            forwarded = getattr(core, "forwarded", None)
            if forwarded is not None:  # what a prefix pool trusts the cache to hold
                del forwarded[keep:]
            core.extend(again, None)

        await session._worker.run(crop)
        read = len(ids)
    session._pending = ids[read:]
    session.ids[:] = ids


def refill(core: Any, ids: Sequence[int]) -> None:
    """A core whose cache cannot be cropped, made to hold `ids` again from an empty cache."""
    reset = getattr(core, "reset", None)
    if reset is None:
        raise TypeError(f"{type(core).__name__} can neither crop its cache nor start it again")
    reset()
    if ids:
        core.extend(list(ids), None)
