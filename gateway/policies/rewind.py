"""Cutting a token session back, for drafts the large model did not confirm.

The token-session contract has no truncation yet; this module knows the two session kinds that
can do it cheaply: HTTP sessions (the sequence lives on this side; the server's prefix cache
does the rest) and in-process sessions whose core keeps a cropable KV cache (transformers'
`DynamicCache`). Any other session reports that it cannot, and the policy does not draft on it.
"""

from __future__ import annotations

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


async def rewind(session: TokenSession, length: int) -> None:
    """Keep the first `length` ids (`length` >= 1 and >= the prompt: never cut into it)."""
    if length >= len(session.ids):
        return
    if isinstance(session, HTTPTokenSession):
        del session.ids[length:]
        return
    if not isinstance(session, ThreadedSession) or not can_rewind(session):
        raise TypeError(f"{type(session).__name__} cannot be rewound")
    core: Any = session._core
    read = len(session.ids) - len(session._pending)  # ids the core has run the model over
    keep = length - 1  # the last kept id is read again: its output is the next distribution
    if keep < read:
        again = session.ids[keep:length]

        def crop() -> None:
            # transformers 5 crops by a negative count of tokens to remove
            core.cache.crop(keep - core.cache.get_seq_length())
            forwarded = getattr(core, "forwarded", None)
            if forwarded is not None:  # what a prefix pool trusts the cache to hold
                del forwarded[keep:]
            # at once, not lazily: a core never rests with a cache its last output does not match
            core.extend(again, None)

        await session._worker.run(crop)
        read = length
    session._pending = list(session.ids[read:length])
    del session.ids[length:]
