"""Work that a client's disconnect cancels.

A model call is watched from the moment its body has been read: until the response starts
(`hot.serve`), and for a whole non-streaming answer, which is made before it starts. A stream is
watched by its own response (`streaming.SSEResponse`) once it starts. So a client that leaves
while the policy is still preparing (a prompt being read, a plan being written) cancels it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")


async def until_disconnected(receive: Receive, work: Awaitable[T]) -> T | None:
    """`work`'s result; None when the client went away first, and `work` was cancelled.

    The work runs in the caller's task, not a task of its own, so it starts without waiting
    for a turn of the event loop (on the time to first token); a watcher task cancels the
    caller when the client leaves, as `asyncio.timeout` does when time runs out."""
    caller = asyncio.current_task()
    assert caller is not None
    watching = True
    left = False

    def on_disconnect(watcher: asyncio.Future[None]) -> None:
        nonlocal left
        if watcher.cancelled() or watcher.exception() is not None or not watching:
            return
        left = True
        caller.cancel()

    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    watcher.add_done_callback(on_disconnect)
    try:
        return await work
    except asyncio.CancelledError:
        if left and caller.uncancel() == 0:
            return None  # our own cancellation: the client left
        raise
    finally:
        watching = False  # a callback already scheduled must not cancel what comes next
        watcher.cancel()


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
