"""The SSE response's first chunk leaves in the response's own step, the rest in its sender."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.types import Message

from gateway.api.streaming import SSEResponse


async def two_chunks(closed: asyncio.Event) -> AsyncGenerator[bytes, None]:
    try:
        yield b"data: first\n\n"
        yield b"data: second\n\n"
    finally:
        closed.set()


async def test_the_first_chunk_leaves_before_the_event_loop_turns() -> None:
    sent: list[Message] = []
    closed = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError

    task = asyncio.ensure_future(SSEResponse(two_chunks(closed))({"type": "http"}, receive, send))
    await asyncio.sleep(0)  # one step of the response's task
    assert [m.get("body") for m in sent] == [None, b"data: first\n\n"]
    await asyncio.wait_for(task, 5)
    assert [m.get("body") for m in sent[1:]] == [b"data: first\n\n", b"data: second\n\n", b""]
    assert sent[-1]["more_body"] is False
    assert closed.is_set()


async def test_a_first_chunk_that_cannot_be_sent_closes_the_body() -> None:
    sent: list[Message] = []
    closed = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            raise OSError("the client's socket is gone")

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    await asyncio.wait_for(SSEResponse(two_chunks(closed))({"type": "http"}, receive, send), 5)
    assert closed.is_set(), "the body (and so the policy and its upstream call) is closed"
    assert [m.get("body") for m in sent] == [None, b"data: first\n\n"], "nothing more is sent"
