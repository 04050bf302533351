"""How a simulated car moves along a road route, and what its phone reports.

Pure: no I/O, no clock; time advances only through :meth:`Drive.step`, and all
randomness comes from the caller's ``random.Random``.

The car never goes faster than the road's expected speed times its driver's
factor, nor faster than lets it brake (``v² = v_limit² + 2 · brake · distance``)
to the limit of every turn ahead and to rest at each red traffic signal, at each
random stop and at the end. Whether each signal is red, and how long the random
waits are, follow :mod:`tracking.routing.traffic`, the same numbers the router's
expected times are built on.
Distances use :class:`tracking.core.route.Route`'s projection, so ``along_m`` is
what the service's snapping reports for the true position.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from tracking.core.geo import bearing_deg
from tracking.core.route import Route
from tracking.routing.kinematics import (
    ACCEL_MPS2,
    BRAKE_MPS2,
    LATERAL_MPS2,
    TURN_TANGENT_M,
    cumulative_m,
    turn_angles_deg,
    turn_radius_m,
    turn_speed_limit_mps,
)
from tracking.routing.plan import RoutePlan
from tracking.routing.traffic import P_RED, RED_WAIT_S, STOP_EVERY_M, STOP_S

# The turn model lives with the router's, which must agree with it; re-exported here.
__all__ = [
    "DEFAULT_MOTION",
    "Drive",
    "Fix",
    "MotionConfig",
    "drive_for_plan",
    "turn_radius_m",
    "turn_speed_limit_mps",
]

MAX_SUBSTEP_S = 0.5  # Drive.step splits longer steps into equal parts of at most this
NO_STOP_NEAR_END_M = 30.0  # random stops are never planned this close to the end
_ARRIVE_EPS_M = 1e-6


@dataclass(frozen=True, slots=True)
class MotionConfig:
    """How drivers drive and how their phones report it (ranges are uniform draws)."""

    # The router's expected times assume these defaults (tracking.routing.kinematics).
    accel_mps2: float = ACCEL_MPS2
    brake_mps2: float = BRAKE_MPS2  # the driver plans braking with this
    lateral_mps2: float = LATERAL_MPS2  # max lateral acceleration -> turn speed limits
    speed_factor: tuple[float, float] = (0.9, 1.05)  # cruise vs road speed, drawn per Drive
    # Traffic lights do most of the stopping; these are the rare other hold-ups.
    stop_every_m: float = STOP_EVERY_M  # mean gap between random stops, exponential; inf: none
    stop_s: tuple[float, float] = STOP_S  # duration of a random stop
    red_prob: float = P_RED  # chance each traffic signal is red when the car comes
    red_wait_s: tuple[float, float] = RED_WAIT_S  # wait at a red signal
    gps_sigma_m: float = 4.0  # normal noise per axis
    outlier_prob: float = 0.01  # chance a fix is an outlier
    outlier_m: tuple[float, float] = (30.0, 80.0)  # an outlier's distance from the truth
    acc_m: tuple[float, float] = (4.0, 15.0)  # reported accuracy, outliers included
    speed_sigma_mps: float = 0.3  # noise of the reported speed
    heading_sigma_deg: float = 5.0  # noise of the reported heading

    def __post_init__(self) -> None:
        positive = (self.accel_mps2, self.brake_mps2, self.lateral_mps2, self.speed_factor[0])
        sigmas = (self.gps_sigma_m, self.speed_sigma_mps, self.heading_sigma_deg)
        ranges = (self.speed_factor, self.stop_s, self.red_wait_s, self.outlier_m, self.acc_m)
        if not (
            all(math.isfinite(value) and value > 0.0 for value in positive)
            and all(math.isfinite(value) and value >= 0.0 for value in sigmas)
            and all(math.isfinite(high) and 0.0 <= low <= high for low, high in ranges)
            and self.stop_every_m > 0.0
            and 0.0 <= self.outlier_prob <= 1.0
            and 0.0 <= self.red_prob <= 1.0
        ):
            raise ValueError(f"invalid {self!r}")


DEFAULT_MOTION = MotionConfig()


@dataclass(frozen=True, slots=True)
class Fix:
    """What the phone reports (lon, lat, acc_m, speed_mps >= 0, heading_deg in [0, 360)
    clockwise from north), plus the car's true position for tests and ETA accounting."""

    lon: float
    lat: float
    acc_m: float
    speed_mps: float
    heading_deg: float
    true_lon: float
    true_lat: float


def _reachable_mps(
    speed_mps: float, gap_m: float, limit_mps: float, brake_mps2: float, dt_s: float
) -> float:
    """Highest speed at the end of a `dt_s` step that can still slow to `limit_mps` in `gap_m`.

    The step has constant acceleration, so it covers ``(v + x) · dt / 2`` and
    ``x² <= limit² + 2 · brake · (gap - (v + x) · dt / 2)``. Solving that
    quadratic exactly (rather than checking the envelope at the start of the
    step) lets a car on the envelope brake at exactly ``brake_mps2`` and come
    to rest on the stop line instead of overshooting it.
    """
    bdt = brake_mps2 * dt_s
    c = limit_mps * limit_mps + 2.0 * brake_mps2 * gap_m - bdt * speed_mps
    if c <= 0.0:
        return 0.0
    # The root (sqrt(bdt² + 4c) - bdt) / 2, written without cancellation.
    return 2.0 * c / (math.sqrt(bdt * bdt + 4.0 * c) + bdt)


class Drive:
    """One vehicle driving one route polyline from its start to its end, then stopped.

    Everything random about the driving (the speed factor, where the random
    stops are, which signals are red, how long each wait lasts) is drawn from
    `rng` at construction, so how often :meth:`observe` is called never changes
    the trajectory. The same seed and the same calls give the same fixes.

    A car stops exactly on a red signal's position, waits, then drives on; a
    green one it drives through, slowing only for the turn there. A car whose
    `initial_speed_mps` is too high to stop in time runs past the stops it
    cannot make and stops hard at the route's end.
    """

    def __init__(
        self,
        coords: Sequence[tuple[float, float]],
        speeds_mps: Sequence[float],
        rng: random.Random,
        cfg: MotionConfig = DEFAULT_MOTION,
        initial_speed_mps: float = 0.0,
        *,
        signals_m: Sequence[float] = (),
    ) -> None:
        """Put a car at the start of a route.

        Args:
            coords: (lon, lat) vertices of the route, degrees; at least one.
            speeds_mps: Free-flow road speed of each segment ``coords[i] -> coords[i + 1]``
                (not a plan's delay-including ``speeds_mps``: use :func:`drive_for_plan`).
            rng: The drive's randomness (driving plan now, GPS noise in :meth:`observe`).
            cfg: Driver and phone behaviour.
            initial_speed_mps: Speed at the start (a car already rolling), >= 0.
            signals_m: Positions of traffic signals along the route, metres in
                :class:`~tracking.core.route.Route`'s metric; ones not strictly
                inside the route are ignored.

        Raises:
            ValueError: On an empty route, mismatched speeds or a bad initial speed.
        """
        if not (math.isfinite(initial_speed_mps) and initial_speed_mps >= 0.0):
            raise ValueError(f"initial_speed_mps must be >= 0, got {initial_speed_mps!r}")
        self._cfg = cfg
        self._rng = rng
        # Route gives the service's own metric (projection, point_at, speed_at).
        route = self._route = Route(coords, speeds_mps)
        xy = [route.proj.to_xy(lon, lat) for lon, lat in route.coords]
        cum_m = self._cum_m = cumulative_m(xy)
        self._seg_heading_deg = _segment_headings(route.coords, cum_m)

        self._factor = rng.uniform(*cfg.speed_factor)
        self._top_mps = max(route.speeds_mps) * self._factor
        self._limits = self._plan_limits(xy)
        self._limit_from_m = [from_m for from_m, _, _ in self._limits]
        self._stops = sorted(self._plan_stops(rng) + self._plan_signals(rng, signals_m))
        self._next_stop = 0

        self._along_m = 0.0
        self._done = route.length_m == 0.0  # nothing to drive
        self._speed_mps = 0.0 if self._done else initial_speed_mps
        self._wait_s = 0.0
        self._elapsed_s = 0.0
        self._reported_heading_deg: float | None = None

    def _plan_limits(self, xy: list[tuple[float, float]]) -> list[tuple[float, float, float]]:
        """(from_m, to_m, speed_mps) stretches where a turn or a slower road caps the speed."""
        cum_m = self._cum_m
        route = self._route
        limits: list[tuple[float, float, float]] = []
        angles_deg = turn_angles_deg(xy, cum_m)
        for i in range(1, len(cum_m) - 1):
            turn_mps = turn_speed_limit_mps(angles_deg[i], self._cfg.lateral_mps2)
            if turn_mps < self._top_mps:
                # The whole arc, which starts and ends TURN_TANGENT_M from the corner.
                from_m = max(0.0, cum_m[i] - TURN_TANGENT_M)
                limits.append((from_m, cum_m[i] + TURN_TANGENT_M, turn_mps))
            # A slower road ahead: brake before entering it, not on it.
            if route.speeds_mps[i] * self._factor < self._top_mps:
                limits.append((cum_m[i], cum_m[i], route.speeds_mps[i] * self._factor))
        return sorted(limits)

    def _plan_stops(self, rng: random.Random) -> list[tuple[float, float]]:
        """(along_m, duration_s) of the random stops, exponential gaps from the start."""
        cfg = self._cfg
        stops: list[tuple[float, float]] = []
        if math.isinf(cfg.stop_every_m):
            return stops
        last_m = self._route.length_m - NO_STOP_NEAR_END_M
        along_m = 0.0
        while True:
            along_m += rng.expovariate(1.0 / cfg.stop_every_m)
            if along_m > last_m:
                return stops
            stops.append((along_m, rng.uniform(*cfg.stop_s)))

    def _plan_signals(
        self, rng: random.Random, signals_m: Sequence[float]
    ) -> list[tuple[float, float]]:
        """(along_m, wait_s) of the signals that will be red; green ones need no plan."""
        cfg = self._cfg
        red: list[tuple[float, float]] = []
        for along_m in sorted(signals_m):
            # Both draws for every signal, so one light's colour never shifts the next's.
            is_red = rng.random() < cfg.red_prob
            wait_s = rng.uniform(*cfg.red_wait_s)
            if is_red and 0.0 < along_m < self._route.length_m:
                red.append((along_m, wait_s))
        return red

    @property
    def along_m(self) -> float:
        """Distance driven from the route's start."""
        return self._along_m

    @property
    def length_m(self) -> float:
        return self._route.length_m

    @property
    def remaining_m(self) -> float:
        return self._route.length_m - self._along_m

    @property
    def speed_mps(self) -> float:
        """True speed, >= 0 (0 while waiting at a stop and once done)."""
        return self._speed_mps

    @property
    def lon(self) -> float:
        """True longitude."""
        return self._route.point_at(self._along_m)[0]

    @property
    def lat(self) -> float:
        """True latitude."""
        return self._route.point_at(self._along_m)[1]

    @property
    def heading_deg(self) -> float:
        """Bearing of the road at the car (the segment ahead at a vertex), [0, 360)."""
        i = bisect_right(self._cum_m, self._along_m) - 1
        return self._seg_heading_deg[min(len(self._seg_heading_deg) - 1, max(0, i))]

    @property
    def done(self) -> bool:
        """True once the car is at the route's end with speed 0."""
        return self._done

    @property
    def elapsed_s(self) -> float:
        """Simulated time from the start, stops included; frozen at the arrival time."""
        return self._elapsed_s

    @property
    def speed_factor(self) -> float:
        """This driver's cruise speed relative to the road's expected speed."""
        return self._factor

    @property
    def speed_limits(self) -> tuple[tuple[float, float, float], ...]:
        """(from_m, to_m, speed_mps) stretches where a turn or a slower road caps the speed."""
        return tuple(self._limits)

    @property
    def stop_positions_m(self) -> tuple[float, ...]:
        """Where along the route the car plans to stop, at random or at a red
        signal (served or not), in order."""
        return tuple(along_m for along_m, _ in self._stops)

    def step(self, dt_s: float) -> None:
        """Advance the physics by `dt_s` seconds (a no-op once done).

        Raises:
            ValueError: `dt_s` is not finite and > 0.
        """
        if not (math.isfinite(dt_s) and dt_s > 0.0):
            raise ValueError(f"dt_s must be finite and > 0, got {dt_s!r}")
        count = max(1, math.ceil(dt_s / MAX_SUBSTEP_S - 1e-9))
        for _ in range(count):
            if self._done:
                return
            self._substep(dt_s / count)

    def _substep(self, dt_s: float) -> None:
        cfg = self._cfg
        brake_mps2 = cfg.brake_mps2
        length_m = self._route.length_m
        while dt_s > 0.0 and not self._done:
            if self._wait_s > 0.0:
                waited_s = min(self._wait_s, dt_s)
                self._wait_s -= waited_s
                self._elapsed_s += waited_s
                dt_s -= waited_s
                continue
            along_m, speed_mps = self._along_m, self._speed_mps
            at_end = self._next_stop >= len(self._stops)
            stop_m = length_m if at_end else self._stops[self._next_stop][0]
            gap_m = max(0.0, stop_m - along_m)

            cap_mps = min(
                speed_mps + cfg.accel_mps2 * dt_s,
                self._route.speed_at(along_m) * self._factor,
                _reachable_mps(speed_mps, gap_m, 0.0, brake_mps2, dt_s),
            )
            # Limits further than this cannot bind even at the top speed.
            fast_mps = max(self._top_mps, speed_mps)
            horizon_m = along_m + fast_mps * fast_mps / (2.0 * brake_mps2) + fast_mps * dt_s
            # A stretch covering the car began at most 2 * TURN_TANGENT_M back.
            first = bisect_left(self._limit_from_m, along_m - 2.0 * TURN_TANGENT_M)
            last = bisect_right(self._limit_from_m, horizon_m, first)
            for from_m, to_m, limit_mps in self._limits[first:last]:
                if from_m > along_m:
                    ahead_m = from_m - along_m
                    limit_mps = _reachable_mps(speed_mps, ahead_m, limit_mps, brake_mps2, dt_s)
                elif to_m < along_m:
                    continue
                cap_mps = min(cap_mps, limit_mps)
            new_mps = max(cap_mps, speed_mps - brake_mps2 * dt_s, 0.0)
            moved_m = (speed_mps + new_mps) / 2.0 * dt_s

            # On the braking envelope the speed reaches exactly 0 on the stop line
            # (at most brake_mps2); only a car that started too fast overshoots.
            overshoots = moved_m > gap_m + _ARRIVE_EPS_M
            if (new_mps == 0.0 and moved_m >= gap_m - _ARRIVE_EPS_M) or (overshoots and at_end):
                # Constant deceleration from speed_mps to 0 over gap_m.
                total_mps = speed_mps + new_mps
                used_s = min(dt_s, 2.0 * gap_m / total_mps) if total_mps > 0.0 else 0.0
                self._along_m, self._speed_mps = stop_m, 0.0
                self._elapsed_s += used_s
                dt_s -= used_s
                if at_end:
                    self._done = True
                else:
                    self._wait_s = self._stops[self._next_stop][1]
                    self._next_stop += 1
                continue
            if overshoots:
                self._next_stop += 1  # too fast to make this stop: drive through
            else:
                moved_m = min(moved_m, gap_m)  # rounding must not carry it past the line
            self._along_m = min(length_m, along_m + moved_m)
            self._speed_mps = new_mps
            self._elapsed_s += dt_s
            dt_s = 0.0

    def observe(self) -> Fix:
        """A noisy GPS fix of the current state, drawn from the drive's rng.

        Normal fixes add gaussian noise (``gps_sigma_m`` per axis); with
        ``outlier_prob`` the fix is instead 30-80 m (``outlier_m``) off in a
        random direction, reporting an ordinary accuracy as phones do. When
        the car is stopped the reported heading is the last one reported.
        """
        cfg = self._cfg
        rng = self._rng
        proj = self._route.proj
        true_lon, true_lat = self._route.point_at(self._along_m)
        x_m, y_m = proj.to_xy(true_lon, true_lat)
        if rng.random() < cfg.outlier_prob:
            direction_rad = rng.uniform(0.0, 2.0 * math.pi)
            offset_m = rng.uniform(*cfg.outlier_m)
            x_m += offset_m * math.sin(direction_rad)
            y_m += offset_m * math.cos(direction_rad)
        else:
            x_m += rng.gauss(0.0, cfg.gps_sigma_m)
            y_m += rng.gauss(0.0, cfg.gps_sigma_m)
        lon, lat = proj.to_lon_lat(x_m, y_m)
        acc_m = rng.uniform(*cfg.acc_m)
        speed_mps = max(0.0, self._speed_mps + rng.gauss(0.0, cfg.speed_sigma_mps))
        heading_deg = self._reported_heading_deg
        # A phone's course is noise when the car stands still; it keeps the last one.
        if self._speed_mps > 0.0 or heading_deg is None:
            heading_deg = (self.heading_deg + rng.gauss(0.0, cfg.heading_sigma_deg)) % 360.0
            heading_deg = 0.0 if heading_deg >= 360.0 else heading_deg  # -1e-17 % 360 == 360.0
            self._reported_heading_deg = heading_deg
        return Fix(lon, lat, acc_m, speed_mps, heading_deg, true_lon, true_lat)


def drive_for_plan(
    plan: RoutePlan, rng: random.Random, cfg: MotionConfig = DEFAULT_MOTION
) -> Drive:
    """A car at the start of a planned route, meeting its traffic signals.

    The car drives the plan's free-flow ``road_speeds_mps`` (its
    ``speeds_mps`` already count the expected waits, which the drive itself
    produces at the red lights), and each of ``plan.signals`` is a light.

    Args:
        plan: The route, e.g. from :meth:`tracking.routing.GraphRouter.route`.
        rng: The drive's randomness.
        cfg: Driver and phone behaviour.
    """
    route = Route(plan.coords)  # the projection a Drive measures positions with
    cum_m = cumulative_m([route.proj.to_xy(lon, lat) for lon, lat in route.coords])
    signals_m = [cum_m[index] for index in plan.signals]
    return Drive(plan.coords, plan.road_speeds_mps, rng, cfg, signals_m=signals_m)


def _segment_headings(coords: Sequence[tuple[float, float]], cum_m: Sequence[float]) -> list[float]:
    """Bearing of each segment; a zero-length one takes the next real one's (else the last's)."""
    real = [i for i in range(len(cum_m) - 1) if cum_m[i + 1] > cum_m[i]]
    if not real:
        return [0.0] * (len(cum_m) - 1)
    bearings = {i: bearing_deg(*coords[i], *coords[i + 1]) for i in real}
    return [bearings[real[min(bisect_left(real, i), len(real) - 1)]] for i in range(len(cum_m) - 1)]
