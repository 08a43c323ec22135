"""Lines of a streamed HTTP body, a network read at a time: what both SSE readers share (the
openai backend's upstream reader and `tandem chat`'s)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp


async def line_batches(response: aiohttp.ClientResponse) -> AsyncIterator[list[bytes]]:
    """The complete lines (without `\\n`) of each read, then an unterminated last line.

    Whole reads rather than aiohttp's `readline`: one await per network read where lines cost
    two per SSE event, and no line-length limit (aiohttp refuses lines over 128 KiB)."""
    tail = b""
    while data := await response.content.readany():
        lines = (tail + data).split(b"\n")
        tail = lines.pop()
        yield lines
    if tail:
        yield [tail]
