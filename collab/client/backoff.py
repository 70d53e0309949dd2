"""Jittered exponential backoff between reconnection attempts (sans-I/O).

Without jitter, every client of a restarted server would come back in the same millisecond;
"equal jitter" keeps the delay within [d/2, d] so the exponential growth still holds.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delay before attempt n+1: a random value in [d/2, d] with d = min(base·2^n, cap)."""

    def __init__(
        self,
        base: float = 0.1,
        cap: float = 5.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rand = rand

    def next_delay(self) -> float:
        ceiling = min(self.base * 2**self.failures, self.cap)
        self.failures = min(self.failures + 1, 64)  # 2**64·base is far beyond any cap
        return ceiling / 2 * (1 + self._rand())

    def reset(self) -> None:
        self.failures = 0
