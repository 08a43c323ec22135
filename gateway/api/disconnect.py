"""Work that a client's disconnect cancels.

A model call is watched from the moment its body has been read: until the response starts
(`hot.serve`), and for a whole non-streaming answer, which is made before it starts. A stream is
watched by its own response (`streaming.SSEResponse`) once it starts. So a client that leaves
while the policy is still preparing (a prompt being read, a plan being written) cancels it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any, TypeVar

from starlette.types import Receive

T = TypeVar("T")


async def until_disconnected(receive: Receive, work: Coroutine[Any, Any, T]) -> T | None:
    """`work`'s result; None when the client went away first, and `work` was cancelled."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return None
    return task.result()


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
