"""`until_disconnected`: the work runs in the caller's task and a client's disconnect cancels
it, but nothing else is mistaken for one."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from gateway.api.disconnect import until_disconnected


class Client:
    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def slow(seconds: float, done: list[str]) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        done.append("cancelled")
        raise
    return "answer"


async def test_the_work_answers_while_the_client_stays() -> None:
    client = Client()
    assert await until_disconnected(client.receive, slow(0.01, [])) == "answer"
    client.gone.set()
    await asyncio.sleep(0.01)  # a disconnect after the work cancels nothing later
    assert asyncio.current_task() is not None
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_a_client_that_leaves_cancels_the_work() -> None:
    client, done = Client(), []
    asyncio.get_running_loop().call_later(0.05, client.gone.set)
    assert await until_disconnected(client.receive, slow(10, done)) is None
    assert done == ["cancelled"]


async def test_a_cancellation_from_elsewhere_still_propagates() -> None:
    client, done = Client(), []
    task = asyncio.ensure_future(until_disconnected(client.receive, slow(10, done)))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["cancelled"]
