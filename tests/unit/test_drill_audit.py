"""The fault drills' judges: what counts as a lost point and a missed event."""

from __future__ import annotations

from driver_sim.audit import audit_points, audit_rider
from driver_sim.storm import StormResult


def test_audit_points_finds_acked_points_missing_doubled_or_out_of_order() -> None:
    """Acked but absent is lost; a seq twice is a duplicate; a lower seq after a higher one is
    out of order; stored but never acked is fine (its ack was lost with a socket)."""
    clean = audit_points([1, 2, 3], [1, 2, 3, 4])
    assert (clean.lost, clean.duplicates, clean.disordered) == ([], 0, 0)
    bad = audit_points([1, 2, 3, 4, 5], [1, 3, 2, 3, 5])
    assert (bad.lost, bad.duplicates, bad.disordered) == ([4], 1, 1)


def test_audit_rider_lets_positions_and_etas_be_skipped_but_nothing_else() -> None:
    """A rider owes every event after its snapshot; skipped positions/ETAs are allowed,
    a missed status or route is not; behind counts seqs short of the trip's last."""
    truth = {1: "status", 2: "position", 3: "eta", 4: "status", 5: "route", 6: "position"}
    ok = audit_rider(1, [2, 4, 5, 6], truth)
    assert ok.missed_required == [] and ok.skipped == 1 and ok.behind == 0
    bad = audit_rider(1, [3, 5], truth)
    assert bad.missed == {"position": [2, 6], "status": [4]}
    assert bad.missed_required == [4] and bad.skipped == 2 and bad.behind == 1
    before_snapshot = audit_rider(3, [4, 5, 6], truth)
    assert before_snapshot.missed == {}


def test_storm_result_wants_every_seq_once_and_acks_that_end_at_the_last() -> None:
    """A storm driver is clean only with trail 1..N and both sockets' acks rising to N."""
    assert StormResult("d", ([500, 1000, 3], [3]), [1, 2, 3], 3).problems == [
        "d: socket 0 acks [500, 1000, 3] (not cumulative to the end)"
    ]
    assert StormResult("d", ([1, 3], [2, 3]), [1, 2, 3], 3).problems == []
    assert len(StormResult("d", ([3], [3]), [1, 2, 2, 3], 3).problems) == 1
