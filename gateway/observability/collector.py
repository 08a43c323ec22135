"""Python's cycle collector, scheduled for a relay's latency.

CPython's collector stops the whole process while it runs. Under 200 relayed streams it ran a
collection of the middle generation every ~0.4 s (about 6 ms each: it walks every object the
requests in flight hold) and a full one every ~5 s (70-120 ms: it walks the whole heap, FastAPI's
and pydantic's start-up objects included). Each pause holds back every stream at once, and the
chunks held back then leave together: the client sees a burst instead of a stream (README,
"The relay's hot path").

Tandem's request path creates no reference cycles (tests/integration/test_collector.py keeps it
so): its objects are freed by reference counting as each request ends, and the collector
finds next to nothing. So once the app has started:
- `gc.freeze()` moves the start-up heap out of the collector's sight for good;
- the youngest generation is still collected automatically: cheap, and it catches the short-lived
  cycles that other paths (an exception kept with its traceback) may make;
- the older generations are collected on a timer, every `interval` seconds, rather than
  whenever enough young objects have survived, which under load is several times a second.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import suppress

log = logging.getLogger(__name__)

NEVER = 2**30  # a threshold no counter reaches: that generation waits for the timer


class _Tuning:
    """The process's collector is one, whatever the number of apps in it (tests run several):
    the first to start tunes it, the last to stop gives Python its own schedule back."""

    users = 0
    saved: tuple[int, int, int] = (700, 10, 10)

    @classmethod
    def acquire(cls) -> None:
        if cls.users == 0:
            gc.collect()
            gc.freeze()
            cls.saved = gc.get_threshold()
            gc.set_threshold(cls.saved[0], NEVER, NEVER)
            log.debug("%d start-up objects frozen", gc.get_freeze_count())
        cls.users += 1

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0:
            gc.set_threshold(*cls.saved)
            gc.unfreeze()


class Collector:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        _Tuning.acquire()
        self._timer = asyncio.get_running_loop().create_task(self._collect_every())

    async def _collect_every(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            gc.collect()

    async def stop(self) -> None:
        """Python's own schedule again (once no other app in the process needs this one), the
        frozen objects back in the oldest generation."""
        if self._timer is None:
            return
        self._timer.cancel()
        with suppress(asyncio.CancelledError):
            await self._timer
        self._timer = None
        _Tuning.release()
