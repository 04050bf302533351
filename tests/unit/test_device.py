"""The phone's outbox: seqs, cumulative acks, rejections, replay batches."""

from __future__ import annotations

from driver_sim.device import Outbox


def filled(n: int) -> Outbox:
    outbox = Outbox()
    for i in range(n):
        outbox.add(1_000 * i, 24.94, 60.17, 5.0)
    return outbox


def test_seqs_start_at_one_and_increase() -> None:
    outbox = filled(3)
    assert [p.seq for p in outbox.pending] == [1, 2, 3]


def test_cumulative_ack_clears_everything_up_to_it_once() -> None:
    outbox = filled(5)
    assert outbox.ack(3) == 3
    assert outbox.ack(3) == 0  # a repeated ack covers nothing new
    assert [p.seq for p in outbox.pending] == [4, 5]
    assert outbox.acked_seqs == [1, 2, 3]


def test_rejected_point_is_dropped_and_never_counted_as_acked() -> None:
    outbox = filled(4)
    outbox.reject(2, "implausible_jump")
    assert outbox.ack(4) == 3
    assert outbox.acked_seqs == [1, 3, 4]
    assert outbox.rejected == {2: "implausible_jump"}
    assert outbox.oldest_pending_seq() == float("inf")


def test_replay_batches_are_ordered_and_bounded() -> None:
    outbox = filled(1201)
    batches = outbox.batches(500)
    assert [len(b) for b in batches] == [500, 500, 201]
    seqs = [p.seq for batch in batches for p in batch]
    assert seqs == list(range(1, 1202))
