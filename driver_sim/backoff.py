"""Reconnect backoff: a pure function of the failure count; only the retry loop sleeps."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with "full jitter".

    Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter")
    spreads the reconnects of many drivers cut off at once, which is what a
    gateway restart does; the bare exponential would bring them back in waves.

    Attributes:
        base_s: Upper bound of the first retry's delay.
        factor: Growth of the upper bound per further failure (>= 1).
        max_s: The upper bound never exceeds this.
    """

    base_s: float = 0.25
    factor: float = 2.0
    max_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("base_s", "factor", "max_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if self.factor < 1.0:
            raise ValueError(f"factor must be >= 1, got {self.factor!r}")

    def cap_s(self, failures: int) -> float:
        """The upper bound of the delay after `failures` consecutive failures.

        Args:
            failures: Consecutive failed attempts so far (1 = first retry).

        Returns:
            ``min(max_s, base_s * factor ** (failures - 1))``, or 0.0 when
            ``failures <= 0``.
        """
        if failures <= 0 or self.base_s == 0.0:
            return 0.0
        exponent = failures - 1
        if self.factor > 1.0 and self.max_s > self.base_s:
            # Past this exponent the bound is max_s anyway; stopping there keeps
            # factor ** exponent finite however long the outage lasts.
            exponent = min(exponent, math.ceil(math.log(self.max_s / self.base_s, self.factor)))
        elif self.factor > 1.0:
            exponent = 0
        return min(self.max_s, self.base_s * self.factor**exponent)

    def delay_s(self, failures: int, rng: random.Random) -> float:
        """Delay before reconnect attempt number `failures` (1 = first retry).

        Args:
            failures: Consecutive failed attempts so far; <= 0 means none.
            rng: Source of the jitter.

        Returns:
            A uniform draw in ``[0, cap_s(failures))``; 0.0 when ``failures <= 0``.
        """
        cap_s = self.cap_s(failures)
        if cap_s == 0.0:
            return 0.0
        # cap * random() with random() < 1 stays below the cap after rounding;
        # rng.uniform(0, cap) computes a + (b - a) * r and promises less.
        return cap_s * rng.random()
