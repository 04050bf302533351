"""Expected delays below free-flow road speed, shared by the router and the simulator.

The router's expected times and the simulated world (``driver_sim.motion``)
read the same numbers from here, so on average the world does what the
service predicts.

Traffic signals: each signal a car passes is red with probability
:data:`P_RED`; a red one costs a wait drawn uniformly from :data:`RED_WAIT_S`.
The expected cost of passing one is therefore :data:`SIGNAL_DELAY_S`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tracking.core.route import MIN_SPEED_MPS

#: Chance that a car finds a given traffic signal red.
P_RED = 0.45
#: Range of the wait at a red signal, seconds (uniform).
RED_WAIT_S: tuple[float, float] = (5.0, 30.0)
#: Expected time lost at one signal: P_RED times the mean red wait (about 7.9 s).
SIGNAL_DELAY_S = P_RED * (RED_WAIT_S[0] + RED_WAIT_S[1]) / 2.0


def delayed_speeds_mps(
    lengths_m: Sequence[float],
    road_speeds_mps: Sequence[float],
    vertex_delays_s: Mapping[int, float],
) -> list[float]:
    """Segment speeds whose travel times include extra delays at some vertices.

    A delay at vertex ``k`` stretches the segment ending there (``k - 1``):
    ``speed = length / (length / road_speed + delay)``. The stretched speed
    never drops below :data:`tracking.core.route.MIN_SPEED_MPS` (which the
    service's :class:`~tracking.core.route.Route` would clamp to, losing the
    delay), so a delay that does not fit on that segment, e.g. one a few metres
    long or of zero length, spills onto the segments before it, and only when
    the route's start is reached onto those after it. On a route too short to
    hold every delay at that floor, the excess is dropped.

    Args:
        lengths_m: Length of each segment, >= 0.
        road_speeds_mps: Free-flow speed of each segment, > 0.
        vertex_delays_s: Vertex index (1 to ``len(lengths_m)``) -> delay, >= 0.

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
    extra_s = [0.0] * count
    for vertex, delay_s in sorted(vertex_delays_s.items()):
        left_s = delay_s
        for seg in (*range(min(vertex, count) - 1, -1, -1), *range(vertex, count)):
            if left_s <= 0.0:
                break
            taken_s = min(left_s, room_s[seg])
            room_s[seg] -= taken_s
            extra_s[seg] += taken_s
            left_s -= taken_s
    return [
        max(MIN_SPEED_MPS, length_m / (length_m / speed_mps + delay_s)) if delay_s > 0.0 else speed_mps
        for length_m, speed_mps, delay_s in zip(lengths_m, road_speeds_mps, extra_s, strict=True)
    ]
