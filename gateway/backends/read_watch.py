"""The read timeout of a streamed upstream body, at no cost per packet.

aiohttp's `sock_read` timeout cancels and re-arms a timer on every packet it receives: on a
relayed stream that is a timer per chunk. Once the response has started, `ReadWatch` takes
over: one timer per stream looks a few times per period at how many bytes have arrived, and
fails the body's reader when none have for the whole period. A stall is noticed after between
one and 1 + 1/CHECKS periods, where aiohttp notices it after exactly one. The same timer holds
the call's total deadline: a body still arriving at it fails too, within a quarter period.
"""

from __future__ import annotations

import asyncio

import aiohttp

CHECKS = 4


class ReadWatch:
    def __init__(
        self, response: aiohttp.ClientResponse, seconds: float, deadline: float | None = None
    ) -> None:
        """`deadline`: the loop time at which the body fails however it moves."""
        self._content = response.content
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._deadline = float("inf") if deadline is None else deadline
        self._seen = self._content.total_bytes
        self._moved_at = self._loop.time()
        if response.connection is not None and response.connection.protocol is not None:
            # aiohttp's own timer stops at the next packet; its setting is renewed per request
            response.connection.protocol.read_timeout = None
        self._handle = self._loop.call_later(self._period(), self._check)

    def _period(self) -> float:
        until_deadline = self._deadline - self._loop.time()
        return max(0.0, min(self._seconds / CHECKS, until_deadline))

    def _check(self) -> None:
        now = self._loop.time()
        if now >= self._deadline:
            self._content.set_exception(TimeoutError("the upstream call ran past its deadline"))
            return
        if self._content.total_bytes != self._seen:
            self._seen = self._content.total_bytes
            self._moved_at = now
        elif now - self._moved_at >= self._seconds:
            self._content.set_exception(TimeoutError("the upstream stopped sending"))
            return
        self._handle = self._loop.call_later(self._period(), self._check)

    def cancel(self) -> None:
        self._handle.cancel()
