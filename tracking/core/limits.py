"""Pure rate-limit policies; the connection loop owns the clock."""

from __future__ import annotations

from collections import deque


class TokenBucket:
    """`rate` tokens per second, holding at most `capacity`."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated_s: float | None = None

    def take(self, now_s: float, n: float = 1.0) -> bool:
        """Take `n` tokens at time `now_s`; False (and nothing taken) if there are too few."""
        if self.updated_s is not None:
            self.tokens = min(self.capacity, self.tokens + (now_s - self.updated_s) * self.rate)
        self.updated_s = now_s
        if self.tokens < n:
            return False
        self.tokens -= n
        return True

    def reserve(self, now_s: float, n: float) -> float:
        """Take `n` tokens, going into debt if needed; returns the seconds to wait
        before acting, so that the average rate holds (backpressure, not refusal)."""
        self.take(now_s, 0.0)
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class StrikeWindow:
    """Counts strikes (bad frames) in a sliding window of `window_s` seconds."""

    def __init__(self, limit: int, window_s: float = 10.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def strike(self, now_s: float) -> bool:
        """Record one strike; True when the limit is exceeded."""
        self._times.append(now_s)
        while self._times and self._times[0] <= now_s - self.window_s:
            self._times.popleft()
        return len(self._times) > self.limit


class ConnectionCounter:
    """Open connections per key (a client IP), each key capped at `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        """Count one more connection for `key`; False (and nothing counted) at the limit."""
        current = self._open.get(key, 0)
        if current >= self.limit:
            return False
        self._open[key] = current + 1
        return True

    def release(self, key: str) -> None:
        """One connection of `key` ended."""
        current = self._open.get(key, 0)
        if current <= 1:
            self._open.pop(key, None)
        else:
            self._open[key] = current - 1

    def count(self, key: str) -> int:
        return self._open.get(key, 0)
