"""The fault drills' judges, pure: which acked points were lost, which events a rider missed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SKIPPABLE = frozenset({"position", "eta"})
"""Events the contract lets a slow reader miss (a newer one replaces them)."""


@dataclass(frozen=True, slots=True)
class PointAudit:
    lost: list[int]
    """Acked seqs missing from the trail."""
    duplicates: int
    """Trail entries whose seq is already in it."""
    disordered: int
    """Trail entries with a seq lower than the one before."""


def audit_points(acked: Sequence[int], trail: Sequence[int]) -> PointAudit:
    """Compare the seqs a driver was acked with the seqs its trip's trail holds."""
    return PointAudit(
        lost=sorted(set(acked) - set(trail)),
        duplicates=len(trail) - len(set(trail)),
        disordered=sum(1 for a, b in zip(trail, trail[1:], strict=False) if b < a),
    )


@dataclass(frozen=True, slots=True)
class RiderAudit:
    missed: dict[str, list[int]]
    """Seqs owed but not received, by event type; only `position`/`eta` may be here."""
    skipped: int
    """Missed `position`/`eta` events (allowed)."""
    behind: int
    """How many seqs the rider's last one is short of the trip's last."""

    @property
    def missed_required(self) -> list[int]:
        """Missed events the contract says every reader gets (status, route, signal)."""
        required = (seqs for kind, seqs in self.missed.items() if kind not in SKIPPABLE)
        return sorted(s for seqs in required for s in seqs)


def audit_rider(start_seq: int, received: Sequence[int], truth: Mapping[int, str]) -> RiderAudit:
    """Compare the seqs a rider received after its first snapshot with the trip's events."""
    got = set(received)
    missed: dict[str, list[int]] = {}
    for seq in sorted(truth):
        if seq > start_seq and seq not in got:
            missed.setdefault(truth[seq], []).append(seq)
    last_truth = max(truth, default=start_seq)
    last_got = max(got, default=start_seq)
    return RiderAudit(
        missed=missed,
        skipped=sum(len(v) for k, v in missed.items() if k in SKIPPABLE),
        behind=max(0, last_truth - last_got),
    )
