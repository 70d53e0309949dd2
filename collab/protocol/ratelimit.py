"""Rate limits as pure state machines (time is passed in): token buckets per connection and
fixed one-minute windows of connection attempts per client address."""

from __future__ import annotations


class TokenBucket:
    """Allows ``rate`` units per second on average and bursts up to ``burst``."""

    __slots__ = ("_level", "_stamp", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._level = burst
        self._stamp = now

    def take(self, amount: float, now: float) -> bool:
        self._level = min(self.burst, self._level + (now - self._stamp) * self.rate)
        self._stamp = now
        if amount > self._level:
            return False
        self._level -= amount
        return True


class AttemptCounter:
    """At most ``limit`` attempts per key in each minute; memory bounded by live keys."""

    def __init__(self, limit: int, max_keys: int = 100_000) -> None:
        self.limit = limit
        self._max_keys = max_keys
        self._window = -1
        self._counts: dict[str, int] = {}

    def allow(self, key: str, now: float) -> bool:
        window = int(now // 60)
        if window != self._window:
            self._window, self._counts = window, {}
        count = self._counts.get(key, 0)
        if count >= self.limit:
            return False
        if len(self._counts) >= self._max_keys and key not in self._counts:
            return False  # an address flood: refuse newcomers until the window turns
        self._counts[key] = count + 1
        return True
