"""Counters of a simulator run, shown live and summarised at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    points_sent: int = 0
    points_acked: int = 0
    points_resent: int = 0
    reconnects: int = 0
    dropouts: int = 0
    trips_started: int = 0
    trips_completed: int = 0
    trips_abandoned: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)
    """Drivers by what they are doing now (idle, to_pickup, boarding, to_dropoff, …)."""

    def summary(self) -> str:
        """One line for logs and CI."""
        errors = ",".join(f"{code}={n}" for code, n in sorted(self.errors.items())) or "none"
        return (
            f"trips_completed={self.trips_completed} trips_abandoned={self.trips_abandoned} "
            f"points_sent={self.points_sent} points_acked={self.points_acked} "
            f"points_resent={self.points_resent} reconnects={self.reconnects} "
            f"dropouts={self.dropouts} errors={errors}"
        )
