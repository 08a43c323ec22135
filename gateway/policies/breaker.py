"""A circuit breaker for the large model: after repeated failures, skip it for a cool-down.

One breaker per policy instance (per alias), shared by its requests: when the large model is
down, requests stop paying the per-intervention deadline and go straight to the small model.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.clock = clock
        self._streak = 0
        self._open_until = 0.0

    @property
    def open(self) -> bool:
        """True while the large model is skipped; after the cool-down one call may try again."""
        return self.clock() < self._open_until

    def success(self) -> None:
        self._streak = 0

    def failure(self) -> None:
        self._streak += 1
        if self._streak >= self.failures:
            self._open_until = self.clock() + self.cooldown
            self._streak = self.failures - 1  # half-open: one more failure re-opens it
