"""Expected time lost below free-flow road speed: signals, hold-ups, speed changes.

The router's expected times and the simulated world (``driver_sim.motion``)
read the same numbers from here and from :mod:`tracking.routing.kinematics`,
so on average the world does what the service predicts.

Traffic signals: each signal a car passes is red with probability
:data:`P_RED`; a red one costs a wait drawn uniformly from :data:`RED_WAIT_S`.
The expected wait at one is therefore :data:`SIGNAL_DELAY_S`. Other
hold-ups stop a car about every :data:`STOP_EVERY_M` for :data:`STOP_S`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from itertools import chain

from tracking.core.route import MIN_SPEED_MPS
from tracking.routing.kinematics import ACCEL_MPS2, BRAKE_MPS2, SpeedProfile

#: Chance that a car finds a given traffic signal red.
P_RED = 0.45
#: Range of the wait at a red signal, seconds (uniform).
RED_WAIT_S: tuple[float, float] = (5.0, 30.0)
#: Expected wait at one signal: P_RED times the mean red wait (about 7.9 s).
SIGNAL_DELAY_S = P_RED * (RED_WAIT_S[0] + RED_WAIT_S[1]) / 2.0

#: Signals closer than this are one junction's lights: a car meets them once.
SIGNAL_CLUSTER_M = 30.0

#: Mean distance between other hold-ups (a car pulling out, a pedestrian, a
#: queue): exponential gaps. Rare, lights do most of the stopping.
STOP_EVERY_M = 2000.0
#: Range of such a hold-up's duration, seconds (uniform).
STOP_S: tuple[float, float] = (5.0, 35.0)


def expected_extra_s(
    xy: Sequence[tuple[float, float]],
    road_speeds_mps: Sequence[float],
    signals: Collection[int],
) -> list[float]:
    """Expected time each segment takes beyond ``length / road_speed``, waits aside.

    What the car loses changing speed, as :mod:`driver_sim.motion` drives:
    starting from rest and stopping at the end, slowing for turns and slower
    roads (:class:`~tracking.routing.kinematics.SpeedProfile`), braking to
    rest at each signal found red (probability :data:`P_RED`) and at the other
    hold-ups (one per :data:`STOP_EVERY_M`, waits included) and getting back
    up to speed. The waits at red signals are left to the caller
    (:data:`SIGNAL_DELAY_S` each), so that they can be put on the segment
    ending at the signal.

    Args:
        xy: Vertices in metres (a local projection), at least 2.
        road_speeds_mps: Free-flow speed of each segment, > 0.
        signals: Indices of the vertices that are traffic signals.

    Returns:
        The expected extra seconds of each segment, >= 0.
    """
    count = len(road_speeds_mps)
    lengths_m = [
        math.hypot(x2 - x1, y2 - y1) for (x1, y1), (x2, y2) in zip(xy, xy[1:], strict=False)
    ]
    profile = SpeedProfile(xy, road_speeds_mps)
    times_s = profile.segment_times_s(count)
    for vertex in signals:
        for seg, stop_s in profile.stop_cost_s(vertex):
            times_s[seg] += P_RED * stop_s
    wait_s = (STOP_S[0] + STOP_S[1]) / 2.0
    extra_s: list[float] = []
    for length_m, speed_mps, time_s in zip(lengths_m, road_speeds_mps, times_s, strict=True):
        # A hold-up costs its wait plus braking to rest from about road speed and back.
        hold_up_s = wait_s + speed_mps / (2.0 * BRAKE_MPS2) + speed_mps / (2.0 * ACCEL_MPS2)
        extra_s.append(
            max(0.0, time_s - length_m / speed_mps) + length_m / STOP_EVERY_M * hold_up_s
        )
    return extra_s


def delayed_speeds_mps(
    lengths_m: Sequence[float],
    road_speeds_mps: Sequence[float],
    extra_s: Sequence[float],
) -> list[float]:
    """Segment speeds whose travel times include some extra seconds each.

    Segment ``i`` should take ``length / road_speed + extra_s[i]``. Its speed
    never drops below :data:`tracking.core.route.MIN_SPEED_MPS` though (the
    service's :class:`~tracking.core.route.Route` would clamp it, losing
    time), so extra time that does not fit on a segment, e.g. a signal's wait
    at the end of one a few metres long, spills onto the segments before it,
    and only when the route's start is reached onto those after it. On a route
    too short to hold it all at that floor, the excess is dropped.

    Args:
        lengths_m: Length of each segment, >= 0.
        road_speeds_mps: Free-flow speed of each segment, > 0.
        extra_s: Extra seconds wanted on each segment, >= 0.

    Returns:
        The speed of each segment, finite, <= its road speed and >= the floor
        (or equal to the road speed where that is already below the floor).
    """
    count = len(lengths_m)
    # Extra seconds each segment can still take before its speed hits the floor.
    room_s = [
        max(0.0, length_m / MIN_SPEED_MPS - length_m / speed_mps)
        for length_m, speed_mps in zip(lengths_m, road_speeds_mps, strict=True)
    ]
    taken_s = [0.0] * count
    for seg, wanted_s in enumerate(extra_s):
        left_s = wanted_s
        for other in chain(range(seg, -1, -1), range(seg + 1, count)):
            if left_s <= 0.0:
                break
            take_s = min(left_s, room_s[other])
            room_s[other] -= take_s
            taken_s[other] += take_s
            left_s -= take_s
    return [
        max(MIN_SPEED_MPS, length_m / (length_m / speed_mps + delay_s))
        if delay_s > 0.0
        else speed_mps
        for length_m, speed_mps, delay_s in zip(lengths_m, road_speeds_mps, taken_s, strict=True)
    ]
