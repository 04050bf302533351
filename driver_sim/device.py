"""The phone's side of the protocol, pure: seq numbers and the buffer of unacked points.

A real driver app keeps every point until the server acknowledges it, so
that nothing is lost to a tunnel, a dropped socket or a server restart.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from tracking.core.messages import Point


@dataclass(slots=True)
class Outbox:
    """Points waiting for their cumulative ack, in seq order."""

    next_seq: int = 1
    acked_through: int = 0
    _pending: OrderedDict[int, Point] = field(default_factory=OrderedDict)
    acked_seqs: list[int] = field(default_factory=list)
    """Every seq the server has acknowledged as stored (for end-to-end checks)."""
    rejected: dict[int, str] = field(default_factory=dict)
    """Seq → error code of points the server refused."""

    def add(
        self,
        ts_ms: int,
        lon: float,
        lat: float,
        acc_m: float | None = None,
        speed_mps: float | None = None,
        heading_deg: float | None = None,
    ) -> Point:
        """Record a new fix and give it the next seq."""
        point = Point(
            seq=self.next_seq,
            ts=ts_ms,
            lon=lon,
            lat=lat,
            acc=acc_m,
            speed=speed_mps,
            heading=heading_deg,
        )
        self._pending[point.seq] = point
        self.next_seq += 1
        return point

    def ack(self, seq: int) -> int:
        """Apply a cumulative ack; returns how many points it newly covers."""
        newly = 0
        while self._pending:
            first = next(iter(self._pending))
            if first > seq:
                break
            del self._pending[first]
            if first not in self.rejected:
                self.acked_seqs.append(first)
                newly += 1
        self.acked_through = max(self.acked_through, seq)
        return newly

    def reject(self, seq: int, code: str) -> None:
        """The server refused this point: drop it, resending would not help."""
        if self._pending.pop(seq, None) is not None:
            self.rejected[seq] = code

    def oldest_pending_seq(self) -> float:
        """Seq of the oldest unacked point, or infinity when all are acked."""
        return next(iter(self._pending), float("inf"))

    @property
    def pending(self) -> list[Point]:
        return list(self._pending.values())

    def batches(self, max_points: int = 500) -> list[list[Point]]:
        """Unacked points in `pos_batch`-sized chunks, oldest first."""
        points = self.pending
        return [points[i : i + max_points] for i in range(0, len(points), max_points)]
