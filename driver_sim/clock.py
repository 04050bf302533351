"""Simulated time: runs `speedup` times faster than the wall clock."""

from __future__ import annotations

import asyncio
import time


class SimClock:
    """`now_ms()` advances `speedup` times faster than real time from the start."""

    def __init__(self, speedup: float = 1.0, start_ms: int | None = None) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.speedup = speedup
        self._t0 = time.monotonic()
        self._start_ms = start_ms if start_ms is not None else time.time_ns() // 1_000_000

    def now_ms(self) -> int:
        return self._start_ms + int((time.monotonic() - self._t0) * 1000 * self.speedup)

    async def sleep(self, sim_s: float) -> None:
        await asyncio.sleep(max(0.0, sim_s / self.speedup))
