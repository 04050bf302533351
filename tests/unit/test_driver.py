"""Per-driver admission of points: every rejection has its code and changes nothing."""

from __future__ import annotations

import pytest

from tests.unit.coretools import CFG, NOW, fix
from tracking.core.driver import JUMP_REJECTS_TO_REANCHOR, DriverState, admit_point
from tracking.core.errors import TrackingError
from tracking.core.messages import Point


def admitted() -> DriverState:
    driver = DriverState("d-1")
    assert admit_point(driver, fix(1, 24.93, 60.165, NOW), NOW, CFG)
    return driver


@pytest.mark.parametrize(
    ("point", "code"),
    [
        (Point(seq=2, ts=NOW + 1000, lon=181.0, lat=60.0), "invalid_position"),
        (Point(seq=2, ts=NOW + 1000, lon=24.9, lat=-91.0), "invalid_position"),
        (Point(seq=2, ts=NOW + 301_000, lon=24.93, lat=60.165), "future_ts"),
        (Point(seq=2, ts=NOW - 1000, lon=24.93, lat=60.165), "out_of_order"),
        (Point(seq=2, ts=NOW + 1000, lon=24.95, lat=60.165), "implausible_jump"),  # 1.1 km in 1 s
    ],
)
def test_rejected_point_gets_its_code_and_changes_nothing(point: Point, code: str) -> None:
    driver = admitted()
    before = driver.to_json()
    with pytest.raises(TrackingError) as info:
        admit_point(driver, point, NOW, CFG)
    assert info.value.code == code
    assert info.value.seq == 2
    if code != "implausible_jump":
        assert driver.to_json() == before
    else:  # only the teleport counter moves
        assert driver.last_seq == 1 and driver.fix is not None and driver.fix["lon"] == 24.93


def test_duplicate_seq_is_not_stored_again() -> None:
    driver = admitted()
    assert admit_point(driver, fix(1, 24.93, 60.165, NOW), NOW, CFG) is False
    assert driver.last_seq == 1


def test_fast_but_possible_motion_is_accepted() -> None:
    """80 m/s (a motorway outlier) passes; the trip filter deals with noise."""
    driver = admitted()
    assert admit_point(driver, fix(2, 24.93 + 80 / 55_500, 60.165, NOW + 1000), NOW, CFG)


def test_repeated_jumps_reanchor_on_the_new_position() -> None:
    """When every new fix is 'a jump', the old fix was the outlier: re-anchor."""
    driver = admitted()
    far = (24.99, 60.165)
    for i in range(JUMP_REJECTS_TO_REANCHOR):
        with pytest.raises(TrackingError):
            admit_point(driver, fix(2 + i, *far, NOW + 1000 * (i + 1)), NOW, CFG)
    seq = 2 + JUMP_REJECTS_TO_REANCHOR
    assert admit_point(driver, fix(seq, *far, NOW + 1000 * seq), NOW, CFG)
    assert driver.fix is not None and driver.fix["lon"] == far[0]


def test_token_bucket_paces_instead_of_refusing() -> None:
    """reserve() goes into debt and says how long to wait so the average rate holds."""
    from tracking.core.limits import TokenBucket

    bucket = TokenBucket(rate=100.0, capacity=200.0)
    assert bucket.reserve(0.0, 150) == 0.0
    assert bucket.reserve(0.0, 150) == pytest.approx(1.0)  # 100 tokens short at 100/s
    assert bucket.reserve(1.0, 0) == pytest.approx(0.0)  # the debt was paid by waiting
    assert not bucket.take(1.0, 1)
