"""The slow reader's outbox: latest wins for positions and ETAs, nothing else is ever dropped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracking.core.errors import SlowConsumer
from tracking.core.outbox import Outbox

SKIPPABLE = ("position", "eta")


def test_a_stalled_reader_gets_the_newest_position_in_seq_order() -> None:
    """Once the oldest item waited min_age_ms, a new position replaces the pending one."""
    box: Outbox[int] = Outbox(max_kept=10, min_age_ms=250)
    box.push(1, "position", now_ms=0)
    box.push(2, None, now_ms=10)  # a status
    box.push(3, "position", now_ms=300)
    box.push(4, "eta", now_ms=300)
    assert [box.pop() for _ in range(len(box))] == [2, 3, 4]
    assert box.skipped == 1 and box.pop() is None


def test_a_burst_for_a_reader_that_keeps_up_is_not_thinned() -> None:
    """Positions queued within min_age_ms of the oldest pending one (a replay) all arrive."""
    box: Outbox[int] = Outbox(max_kept=10, min_age_ms=250)
    for i in range(100):
        box.push(i, "position", now_ms=i)
    assert [box.pop() for _ in range(100)] == list(range(100)) and box.skipped == 0


def test_a_continuous_stream_to_a_stalled_reader_is_thinned() -> None:
    """One position a millisecond to a reader that takes nothing: after 250 ms, one pending."""
    box: Outbox[int] = Outbox(max_kept=10, min_age_ms=250)
    for i in range(1000):
        box.push(i, "position", now_ms=i)
    assert len(box) < 300 and box.pop() == 0


def test_a_full_outbox_thins_positions_at_once() -> None:
    """Past max_len pending items, a new position replaces the pending one however young."""
    box: Outbox[int] = Outbox(max_kept=10, max_len=5, min_age_ms=10_000)
    for i in range(50):
        box.push(i, "position", now_ms=0)
    assert len(box) == 5 and box.skipped == 45


def test_a_reader_owed_too_many_kept_events_is_hopeless() -> None:
    """Past max_kept unskippable items, push raises slow_consumer."""
    box: Outbox[int] = Outbox(max_kept=3)
    for i in range(3):
        box.push(i)
    box.push(99, "position")  # skippable ones never count
    with pytest.raises(SlowConsumer):
        box.push(3)
    assert box.pop() == 0
    box.push(3)  # room again once the reader takes one


steps = st.lists(
    st.tuples(
        st.sampled_from(["position", "eta", "status", "route", "signal"]),
        st.integers(0, 400),  # ms since the previous push
        st.booleans(),  # the reader takes one item now
    ),
    max_size=300,
)


@given(steps)
def test_outbox_drops_only_superseded_positions_and_etas(plan: list[tuple[str, int, bool]]) -> None:
    """Any push/pop mix: kept kinds all arrive in order; a skipped one had a newer; bounded."""
    box: Outbox[tuple[int, str]] = Outbox(max_kept=1000, max_len=20, min_age_ms=250)
    delivered: list[tuple[int, str]] = []
    now = 0
    for seq, (kind, gap_ms, take) in enumerate(plan):
        now += gap_ms
        box.push((seq, kind), kind if kind in SKIPPABLE else None, now)
        assert len(box) <= box.max_len + box.kept + len(SKIPPABLE)
        if take:
            item = box.pop()
            assert item is not None
            delivered.append(item)
    while (item := box.pop()) is not None:
        delivered.append(item)
    kinds = [kind for kind, _, _ in plan]
    assert [s for s, _ in delivered] == sorted(s for s, _ in delivered)
    kept = [(s, k) for s, k in enumerate(kinds) if k not in SKIPPABLE]
    assert [d for d in delivered if d[1] not in SKIPPABLE] == kept
    for seq, kind in enumerate(kinds):
        if kind in SKIPPABLE and (seq, kind) not in delivered:
            assert any(s > seq and k == kind for s, k in delivered)
    assert box.skipped == len(kinds) - len(delivered)
