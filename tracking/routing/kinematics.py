"""How a city car's speed follows the road: accelerations, turn speed limits, profiles.

The simulated drivers (``driver_sim.motion``) drive by these rules and the
router's expected times assume them (:class:`SpeedProfile`), so a corner or a
stop costs the same time in the world as in the prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ACCEL_MPS2 = 1.8  # gentle city acceleration
BRAKE_MPS2 = 3.0  # comfortable braking, which drivers plan with
LATERAL_MPS2 = 2.5  # max lateral acceleration in turns -> turn speed limits
TURN_WINDOW_M = 20.0  # a vertex's turn angle is measured between chords this long
TURN_TANGENT_M = 10.0  # a turn's arc starts and ends this far from the corner
MIN_TURN_RADIUS_M = 3.0
MAX_TURN_RADIUS_M = 200.0


def turn_radius_m(turn_deg: float) -> float:
    """Radius of the arc a car drives through a turn between two straight roads.

    The arc is tangent to both roads :data:`TURN_TANGENT_M` from the corner
    (``r = t / tan(angle / 2)``), clamped to
    [:data:`MIN_TURN_RADIUS_M`, :data:`MAX_TURN_RADIUS_M`]: 90° gives 10 m,
    a U-turn 3 m, 15° about 76 m. `turn_deg` is the change of direction (180 = U-turn).
    """
    half_rad = math.radians(min(abs(turn_deg), 180.0)) / 2.0
    if half_rad == 0.0:
        return MAX_TURN_RADIUS_M
    return min(MAX_TURN_RADIUS_M, max(MIN_TURN_RADIUS_M, TURN_TANGENT_M / math.tan(half_rad)))


def turn_speed_limit_mps(turn_deg: float, lateral_mps2: float) -> float:
    """Highest speed through a turn of `turn_deg` at lateral acceleration `lateral_mps2`.

    ``sqrt(lateral · radius)``: with 2.5 m/s², 90° gives 5 m/s, a U-turn
    2.7 m/s, and turns under 15° (> 13.8 m/s) do not limit city driving.
    """
    return math.sqrt(lateral_mps2 * turn_radius_m(turn_deg))


def cumulative_m(xy: Sequence[tuple[float, float]]) -> list[float]:
    """Distance from the first point to each point along a metric polyline."""
    cum_m = [0.0]
    for (x1, y1), (x2, y2) in zip(xy, xy[1:], strict=False):
        cum_m.append(cum_m[-1] + math.hypot(x2 - x1, y2 - y1))
    return cum_m


def turn_angles_deg(xy: Sequence[tuple[float, float]], cum_m: Sequence[float]) -> list[float]:
    """How much the road turns at each vertex of a metric polyline, degrees (0 at both ends).

    Measured between the chords from :data:`TURN_WINDOW_M` before the vertex
    and to as far after it, rather than between the two adjacent segments: a
    curve drawn with many short segments turns as much as it really does, and
    a lone digitising kink a metre long does not look like a corner.

    Args:
        xy: Vertices, metres.
        cum_m: Their distances along the line (:func:`cumulative_m`).
    """
    count = len(xy)
    last_seg = count - 2
    angles_deg = [0.0] * count
    # Segments holding the chords' far ends; both only move forward (route() runs this).
    back = ahead = 0
    for i in range(1, count - 1):
        behind_m = max(0.0, cum_m[i] - TURN_WINDOW_M)
        ahead_m = min(cum_m[-1], cum_m[i] + TURN_WINDOW_M)
        while back < last_seg and cum_m[back + 1] <= behind_m:
            back += 1
        while ahead < last_seg and cum_m[ahead + 1] <= ahead_m:
            ahead += 1
        x, y = xy[i]
        bx, by = _point_on(xy, cum_m, back, behind_m)
        fx, fy = _point_on(xy, cum_m, ahead, ahead_m)
        angles_deg[i] = _turn_deg(x - bx, y - by, fx - x, fy - y)
    return angles_deg


def _point_on(
    xy: Sequence[tuple[float, float]], cum_m: Sequence[float], seg: int, along_m: float
) -> tuple[float, float]:
    """The point `along_m` along the line, which lies on segment `seg`."""
    seg_m = cum_m[seg + 1] - cum_m[seg]
    t = 0.0 if seg_m == 0.0 else (along_m - cum_m[seg]) / seg_m
    (x1, y1), (x2, y2) = xy[seg], xy[seg + 1]
    return x1 + t * (x2 - x1), y1 + t * (y2 - y1)


def _turn_deg(ax: float, ay: float, bx: float, by: float) -> float:
    """Unsigned angle between direction vectors a and b, degrees (0 when either is null)."""
    return abs(math.degrees(math.atan2(ax * by - ay * bx, ax * bx + ay * by)))


def run_time_s(
    length_m: float,
    cruise_mps: float,
    start_mps: float,
    end_mps: float,
    accel_mps2: float = ACCEL_MPS2,
    brake_mps2: float = BRAKE_MPS2,
) -> float:
    """Time to drive `length_m` entering at `start_mps` and leaving at `end_mps`.

    The car accelerates at `accel_mps2` up to `cruise_mps` (or as high as it
    still can brake from in time), then brakes at `brake_mps2`: a trapezoid or
    a triangle of speed. When `length_m` is too short for even that, the speed
    changes evenly from start to end.

    Args:
        length_m: Distance, >= 0.
        cruise_mps: Highest speed, > 0.
        start_mps / end_mps: Speeds at both ends, each in [0, `cruise_mps`].
    """
    if length_m <= 0.0:
        return 0.0
    accel_m = (cruise_mps * cruise_mps - start_mps * start_mps) / (2.0 * accel_mps2)
    brake_m = (cruise_mps * cruise_mps - end_mps * end_mps) / (2.0 * brake_mps2)
    if accel_m + brake_m <= length_m:
        cruise_s = (length_m - accel_m - brake_m) / cruise_mps
        return (
            (cruise_mps - start_mps) / accel_mps2 + (cruise_mps - end_mps) / brake_mps2 + cruise_s
        )
    peak_mps = math.sqrt(
        (
            2.0 * accel_mps2 * brake_mps2 * length_m
            + brake_mps2 * start_mps * start_mps
            + accel_mps2 * end_mps * end_mps
        )
        / (accel_mps2 + brake_mps2)
    )
    if peak_mps < max(start_mps, end_mps):
        return 2.0 * length_m / (start_mps + end_mps)
    return (peak_mps - start_mps) / accel_mps2 + (peak_mps - end_mps) / brake_mps2


class SpeedProfile:
    """The fastest a car may drive a route from rest to rest, and what a stop costs on it.

    The car keeps to each segment's road speed and, over each turn's arc
    (:data:`TURN_TANGENT_M` either side of the corner), to the turn's limit;
    it accelerates at `accel_mps2` and brakes at `brake_mps2` in time for
    every limit ahead. That is how :class:`driver_sim.motion.Drive` drives,
    without its driver's speed factor.

    The route is cut at every vertex and arc end into stretches of constant
    speed cap; the speed at each cut comes from a forward (acceleration) and
    a backward (braking) pass, and each stretch is then driven as in
    :func:`run_time_s`.
    """

    def __init__(
        self,
        xy: Sequence[tuple[float, float]],
        road_speeds_mps: Sequence[float],
        accel_mps2: float = ACCEL_MPS2,
        brake_mps2: float = BRAKE_MPS2,
        lateral_mps2: float = LATERAL_MPS2,
    ) -> None:
        """Plan the profile of a polyline.

        Args:
            xy: Vertices in metres (a local projection), at least 2.
            road_speeds_mps: Speed cap of each segment, > 0.
            accel_mps2 / brake_mps2 / lateral_mps2: The driver's limits.
        """
        self._accel_mps2 = accel_mps2
        self._brake_mps2 = brake_mps2
        cum_m = cumulative_m(xy)
        angles_deg = turn_angles_deg(xy, cum_m)
        arcs: list[tuple[float, float, float]] = []
        for i in range(1, len(cum_m) - 1):
            turn_mps = turn_speed_limit_mps(angles_deg[i], lateral_mps2)
            if turn_mps < max(road_speeds_mps[i - 1], road_speeds_mps[i]):
                from_m = max(0.0, cum_m[i] - TURN_TANGENT_M)
                arcs.append((from_m, min(cum_m[-1], cum_m[i] + TURN_TANGENT_M), turn_mps))
        cuts_m = sorted({*cum_m, *(m for from_m, to_m, _ in arcs for m in (from_m, to_m))})
        node_of = {along_m: node for node, along_m in enumerate(cuts_m)}
        self.vertex_node = [node_of[along_m] for along_m in cum_m]
        self._cut_m = cuts_m
        # Stretch j runs from cut j - 1 to cut j; stretch 0 is a placeholder.
        self._segment = [0] * len(cuts_m)
        self._cap_mps = [0.0] * len(cuts_m)
        seg = 0
        for j in range(1, len(cuts_m)):
            # Vertices are cuts, so a stretch lies on the segment its start begins.
            while cum_m[seg + 1] <= cuts_m[j - 1]:
                seg += 1
            self._segment[j] = seg
            self._cap_mps[j] = road_speeds_mps[seg]
        for from_m, to_m, turn_mps in arcs:
            for j in range(node_of[from_m] + 1, node_of[to_m] + 1):
                self._cap_mps[j] = min(self._cap_mps[j], turn_mps)
        self._node_mps = self._plan_speeds()

    def _plan_speeds(self) -> list[float]:
        cut_m, cap_mps = self._cut_m, self._cap_mps
        last = len(cut_m) - 1
        speeds_mps = [0.0] * len(cut_m)
        for j in range(1, last):
            reach_mps2 = speeds_mps[j - 1] ** 2 + 2.0 * self._accel_mps2 * (cut_m[j] - cut_m[j - 1])
            speeds_mps[j] = min(cap_mps[j], cap_mps[j + 1], math.sqrt(reach_mps2))
        for j in range(last - 1, 0, -1):
            stop_mps2 = speeds_mps[j + 1] ** 2 + 2.0 * self._brake_mps2 * (cut_m[j + 1] - cut_m[j])
            speeds_mps[j] = min(speeds_mps[j], math.sqrt(stop_mps2))
        return speeds_mps

    def _stretch_s(self, j: int, start_mps: float, end_mps: float) -> float:
        length_m = self._cut_m[j] - self._cut_m[j - 1]
        return run_time_s(
            length_m, self._cap_mps[j], start_mps, end_mps, self._accel_mps2, self._brake_mps2
        )

    def segment_times_s(self, segment_count: int) -> list[float]:
        """Time the profile spends on each of the route's `segment_count` segments."""
        times_s = [0.0] * segment_count
        speeds_mps = self._node_mps
        for j in range(1, len(self._cut_m)):
            times_s[self._segment[j]] += self._stretch_s(j, speeds_mps[j - 1], speeds_mps[j])
        return times_s

    def stop_cost_s(self, vertex: int) -> list[tuple[int, float]]:
        """Extra time, by segment, of coming to rest at `vertex` and driving off again.

        The wait itself is not included. Only the stretches where braking for
        the stop, or speeding up after it, holds the car below the profile
        take longer.

        Returns:
            (segment index, extra seconds) pairs.
        """
        cut_m, speeds_mps = self._cut_m, self._node_mps
        stop = self.vertex_node[vertex]
        slowed = {stop: 0.0}
        first = stop
        while first > 0:
            limit_mps2 = slowed[first] ** 2 + 2.0 * self._brake_mps2 * (
                cut_m[first] - cut_m[first - 1]
            )
            if limit_mps2 >= speeds_mps[first - 1] ** 2:
                break
            first -= 1
            slowed[first] = math.sqrt(limit_mps2)
        last = stop
        while last < len(cut_m) - 1:
            limit_mps2 = slowed[last] ** 2 + 2.0 * self._accel_mps2 * (
                cut_m[last + 1] - cut_m[last]
            )
            if limit_mps2 >= speeds_mps[last + 1] ** 2:
                break
            last += 1
            slowed[last] = math.sqrt(limit_mps2)
        costs: list[tuple[int, float]] = []
        for j in range(max(1, first), min(last + 1, len(cut_m) - 1) + 1):
            if j - 1 not in slowed and j not in slowed:
                continue
            start_mps = slowed.get(j - 1, speeds_mps[j - 1])
            end_mps = slowed.get(j, speeds_mps[j])
            extra_s = self._stretch_s(j, start_mps, end_mps) - self._stretch_s(
                j, speeds_mps[j - 1], speeds_mps[j]
            )
            costs.append((self._segment[j], extra_s))
        return costs
