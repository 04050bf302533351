"""The simulated car: physics along real Helsinki routes and the phone's noisy fixes."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driver_sim.motion import Drive, Fix, MotionConfig, drive_for_plan, turn_speed_limit_mps
from tracking.core.geo import LocalProjection, haversine_m
from tracking.core.route import Route
from tracking.routing import GraphRouter, RoutePlan, default_map_path, load_router
from tracking.routing.kinematics import SpeedProfile, cumulative_m
from tracking.routing.traffic import P_RED, RED_WAIT_S

DT_S = 0.5
EPS = 1e-6
NO_STOPS = MotionConfig(stop_every_m=math.inf)

# An L-shaped route in central Helsinki: 300 m east, then 300 m north.
_L_PROJ = LocalProjection(24.9400, 60.1700)
L_START = _L_PROJ.to_lon_lat(0.0, 0.0)
L_CORNER = _L_PROJ.to_lon_lat(300.0, 0.0)
L_END = _L_PROJ.to_lon_lat(300.0, 300.0)
L_COORDS = [L_START, L_CORNER, L_END]
L_SPEEDS = [30 / 3.6, 30 / 3.6]


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    along_m: float
    speed_mps: float


@pytest.fixture(scope="module")
def router() -> GraphRouter:
    return load_router(default_map_path())


def _long_routes(router: GraphRouter, seed: int, count: int) -> list[RoutePlan]:
    """`count` routes between random road points, each longer than 500 m."""
    rng = random.Random(seed)
    plans: list[RoutePlan] = []
    while len(plans) < count:
        plan = router.route(router.random_point(rng), router.random_point(rng))
        if plan.distance_m > 500.0:
            plans.append(plan)
    return plans


@pytest.fixture(scope="module")
def plans(router: GraphRouter) -> list[RoutePlan]:
    return _long_routes(router, seed=2024, count=6)


def _drive(drive: Drive, dt_s: float = DT_S, limit_s: float = 3600.0) -> list[Sample]:
    """Step until done; the samples include the start."""
    samples = [Sample(drive.elapsed_s, drive.along_m, drive.speed_mps)]
    while not drive.done:
        drive.step(dt_s)
        samples.append(Sample(drive.elapsed_s, drive.along_m, drive.speed_mps))
        assert drive.elapsed_s < limit_s, "the drive never finished"
    return samples


def test_drive_reaches_the_end_in_a_plausible_time(plans: list[RoutePlan]) -> None:
    """Lights, stops and turns included, a drive takes 0.6x to 2x the route's expected
    duration (which counts the lights' expected waits)."""
    for seed, plan in enumerate(plans):
        drive = drive_for_plan(plan, random.Random(seed))
        _drive(drive)
        assert drive.done
        assert 0.6 * plan.duration_s <= drive.elapsed_s <= 2.0 * plan.duration_s
        assert drive.along_m == drive.length_m
        assert drive.length_m == pytest.approx(plan.distance_m, rel=1e-3)


def test_car_stands_still_at_the_end(plans: list[RoutePlan]) -> None:
    """Once done, the car is on the route's last point with speed 0, and stays there."""
    plan = plans[0]
    drive = Drive(plan.coords, plan.road_speeds_mps, random.Random(1))
    _drive(drive)
    arrived_s = drive.elapsed_s
    drive.step(10.0)
    assert drive.speed_mps == 0.0
    assert drive.remaining_m == 0.0
    assert drive.elapsed_s == arrived_s
    assert haversine_m(drive.lon, drive.lat, *plan.coords[-1]) < 0.01


def test_speed_stays_within_the_road_speed_times_the_driver_factor(
    plans: list[RoutePlan],
) -> None:
    """Speed never exceeds the road's speed (here and overall) times the driver's factor."""
    cfg = MotionConfig()
    for seed, plan in enumerate(plans):
        drive = Drive(plan.coords, plan.road_speeds_mps, random.Random(seed), cfg)
        route = Route(plan.coords, plan.road_speeds_mps)
        top_mps = max(plan.road_speeds_mps) * cfg.speed_factor[1]
        for sample in _drive(drive):
            assert 0.0 <= sample.speed_mps <= top_mps + EPS
            local_mps = route.speed_at(sample.along_m) * drive.speed_factor
            assert sample.speed_mps <= local_mps + EPS


@pytest.mark.parametrize(
    ("dt_s", "stop_every_m"), [(DT_S, 400.0), (DT_S, 30.0), (0.3, 30.0), (0.1, 30.0), (0.1, 60.0)]
)
def test_acceleration_and_braking_stay_within_the_config(
    plans: list[RoutePlan], dt_s: float, stop_every_m: float
) -> None:
    """Between steps speed changes by at most accel_mps2 up and brake_mps2 down, also
    when coming to rest on a stop line (dense stops make many such arrivals)."""
    cfg = MotionConfig(stop_every_m=stop_every_m)
    for seed, plan in enumerate(plans):
        samples = _drive(Drive(plan.coords, plan.road_speeds_mps, random.Random(seed), cfg), dt_s)
        for before, after in zip(samples, samples[1:], strict=False):
            rate_mps2 = (after.speed_mps - before.speed_mps) / dt_s
            assert -cfg.brake_mps2 - EPS <= rate_mps2 <= cfg.accel_mps2 + EPS


def test_along_never_decreases(plans: list[RoutePlan]) -> None:
    """Progress along the route is monotone and ends at the route's length."""
    plan = plans[1]
    samples = _drive(Drive(plan.coords, plan.road_speeds_mps, random.Random(5)))
    alongs = [s.along_m for s in samples]
    assert alongs == sorted(alongs)
    assert alongs[-1] == pytest.approx(Route(plan.coords, plan.road_speeds_mps).length_m)


def test_turn_speed_limit_falls_with_the_turn_angle() -> None:
    """Gentle bends do not limit city speeds; 90° is about 5 m/s; a U-turn 2-3 m/s."""
    limits = [turn_speed_limit_mps(turn_deg, 2.5) for turn_deg in range(0, 181, 5)]
    assert limits == sorted(limits, reverse=True)
    assert turn_speed_limit_mps(15.0, 2.5) > 13.0
    assert 5.0 <= turn_speed_limit_mps(90.0, 2.5) <= 6.0
    assert 2.0 <= turn_speed_limit_mps(180.0, 2.5) <= 3.0


def test_car_slows_to_the_turn_limit_at_a_right_angle_corner() -> None:
    """On an L-shaped route the car brakes to the 90° limit by the corner, then speeds up."""
    cfg = NO_STOPS
    drive = Drive(L_COORDS, L_SPEEDS, random.Random(3), cfg)
    corner_m = Route(L_COORDS, L_SPEEDS).snap(*L_CORNER).along_m
    limit_mps = turn_speed_limit_mps(90.0, cfg.lateral_mps2)
    samples = _drive(drive)
    before = [s for s in samples if s.along_m < corner_m]
    at_corner = next(s for s in samples if s.along_m >= corner_m)
    assert max(s.speed_mps for s in before) > limit_mps + 2.0
    # The braking envelope: from every point it can still slow to the limit.
    for s in before:
        envelope_mps2 = limit_mps**2 + 2.0 * cfg.brake_mps2 * (corner_m - s.along_m)
        assert s.speed_mps**2 <= envelope_mps2 + 1e-6
    assert at_corner.speed_mps <= limit_mps + 0.05
    after = [s for s in samples if corner_m + 50.0 < s.along_m < corner_m + 150.0]
    assert max(s.speed_mps for s in after) > limit_mps + 2.0


def test_car_honours_every_planned_limit_ahead(plans: list[RoutePlan]) -> None:
    """The car can always still brake to each turn / slower-road limit ahead, and keeps to
    the limit of the stretch it is on (a turn's whole arc)."""
    cfg = MotionConfig()
    for seed, plan in enumerate(plans):
        drive = Drive(plan.coords, plan.road_speeds_mps, random.Random(seed), cfg)
        limits = drive.speed_limits
        assert limits, "a real city route has turns"
        for sample in _drive(drive, 0.2):
            for from_m, to_m, limit_mps in limits:
                if from_m >= sample.along_m:
                    envelope_mps2 = limit_mps**2 + 2.0 * cfg.brake_mps2 * (from_m - sample.along_m)
                    assert sample.speed_mps**2 <= envelope_mps2 + 1e-6
                elif sample.along_m <= to_m:
                    assert sample.speed_mps <= limit_mps + EPS


def test_sharp_real_turns_get_low_limits(router: GraphRouter) -> None:
    """Somewhere in Helsinki's routes a > 60° turn is planned at or under the 60° limit."""
    lateral_mps2 = MotionConfig().lateral_mps2
    sharp_mps = turn_speed_limit_mps(60.0, lateral_mps2)
    slowest_mps = min(
        limit_mps
        for plan in _long_routes(router, seed=7, count=5)
        for _, _, limit_mps in Drive(
            plan.coords, plan.road_speeds_mps, random.Random(1)
        ).speed_limits
    )
    assert slowest_mps <= sharp_mps


def test_car_starting_too_fast_brakes_no_harder_than_brake_mps2() -> None:
    """A car handed over at 15 m/s on a 30 km/h street slows at brake_mps2, not at once."""
    cfg = NO_STOPS
    drive = Drive(L_COORDS, L_SPEEDS, random.Random(2), cfg, initial_speed_mps=15.0)
    previous_mps = drive.speed_mps
    drive.step(DT_S)
    assert drive.speed_mps == pytest.approx(previous_mps - cfg.brake_mps2 * DT_S)
    samples = _drive(drive)
    assert samples[-1].speed_mps == 0.0 and drive.done


def test_curve_drawn_with_short_segments_is_driven_at_its_real_radius() -> None:
    """A 20 m-radius bend drawn as ten 9° kinks limits speed like the bend (~7 m/s)."""
    cfg = NO_STOPS
    radius_m = 20.0
    arc_xy = [
        (200.0 + radius_m * math.sin(a), radius_m - radius_m * math.cos(a))
        for a in (math.pi / 2 * k / 10 for k in range(11))
    ]
    xy = [(0.0, 0.0), *arc_xy, (200.0 + radius_m, 220.0)]
    coords = [_L_PROJ.to_lon_lat(x_m, y_m) for x_m, y_m in xy]
    drive = Drive(coords, [50 / 3.6] * (len(coords) - 1), random.Random(4), cfg)
    arc_m = Route(coords).snap(*coords[1]).along_m, Route(coords).snap(*coords[11]).along_m
    in_arc = [s.speed_mps for s in _drive(drive, 0.1) if arc_m[0] <= s.along_m <= arc_m[1]]
    assert in_arc and max(in_arc) <= 1.1 * math.sqrt(cfg.lateral_mps2 * radius_m)


def test_lone_digitising_kink_does_not_slow_the_car() -> None:
    """A 30° kink of 1 m on a straight 50 km/h street is not a corner: no braking for it."""
    kink_xy = [(0.0, 0.0), (200.0, 0.0), (200.0 + math.cos(0.5), math.sin(0.5)), (400.0, 0.5)]
    coords = [_L_PROJ.to_lon_lat(x_m, y_m) for x_m, y_m in kink_xy]
    drive = Drive(coords, [50 / 3.6] * 3, random.Random(4), NO_STOPS)
    cruise_mps = 50 / 3.6 * drive.speed_factor
    middle = [s.speed_mps for s in _drive(drive) if 150.0 <= s.along_m <= 250.0]
    assert middle and min(middle) >= cruise_mps - EPS


def test_heading_follows_the_road() -> None:
    """Heading is the road's bearing: east on the first leg, north on the second."""
    drive = Drive(L_COORDS, L_SPEEDS, random.Random(3), NO_STOPS)
    assert drive.heading_deg == pytest.approx(90.0, abs=0.5)
    while drive.along_m < drive.length_m - 10.0:
        drive.step(DT_S)
    assert min(drive.heading_deg, 360.0 - drive.heading_deg) < 0.5


def test_random_stops_halt_the_car_mid_route(plans: list[RoutePlan]) -> None:
    """With a stop every ~100 m the car stands still mid-route for at least 5 s."""
    plan = plans[0]
    drive = Drive(
        plan.coords, plan.road_speeds_mps, random.Random(9), MotionConfig(stop_every_m=100.0)
    )
    samples = _drive(drive)
    mid_route = [
        s for s in samples if s.speed_mps == 0.0 and 1.0 < s.along_m < drive.length_m - 1.0
    ]
    assert mid_route
    longest_s = max(
        sum(1 for s in mid_route if s.along_m == stop_m) * DT_S
        for stop_m in {s.along_m for s in mid_route}
    )
    assert longest_s >= 5.0


def test_no_stop_is_planned_near_the_end(plans: list[RoutePlan]) -> None:
    """However dense the stops, none is planned within 30 m of the route's end."""
    cfg = MotionConfig(stop_every_m=5.0)
    for seed in range(20):
        plan = plans[seed % len(plans)]
        drive = Drive(plan.coords, plan.road_speeds_mps, random.Random(seed), cfg)
        assert drive.stop_positions_m
        assert max(drive.stop_positions_m) <= drive.length_m - 30.0


def test_observing_does_not_change_the_trajectory(plans: list[RoutePlan]) -> None:
    """The physics draws its randomness up front: calling observe() leaves the drive as is."""
    plan = plans[2]
    quiet = Drive(plan.coords, plan.road_speeds_mps, random.Random(4))
    watched = Drive(plan.coords, plan.road_speeds_mps, random.Random(4))
    while not quiet.done:
        quiet.step(DT_S)
        watched.step(DT_S)
        watched.observe()
        assert (watched.along_m, watched.speed_mps) == (quiet.along_m, quiet.speed_mps)
    assert watched.done


def _fixes(drive: Drive, count: int, dt_s: float = 0.0) -> list[Fix]:
    fixes = []
    for _ in range(count):
        if dt_s > 0.0:
            drive.step(dt_s)
        fixes.append(drive.observe())
    return fixes


def _error_m(fix: Fix) -> float:
    return haversine_m(fix.lon, fix.lat, fix.true_lon, fix.true_lat)


def test_gps_noise_matches_the_configured_sigma(plans: list[RoutePlan]) -> None:
    """Without outliers the mean error is about sigma * sqrt(pi / 2) (5 m for 4 m)."""
    cfg = MotionConfig(outlier_prob=0.0)
    plan = plans[0]
    standing = Drive(plan.coords, plan.road_speeds_mps, random.Random(11), cfg)
    moving = Drive(plan.coords, plan.road_speeds_mps, random.Random(12), cfg)
    for drive, dt_s in ((standing, 0.0), (moving, 0.1)):
        fixes = _fixes(drive, 2000, dt_s)
        mean_error_m = sum(_error_m(f) for f in fixes) / len(fixes)
        assert 3.0 <= mean_error_m <= 8.0
        assert all(cfg.acc_m[0] <= f.acc_m <= cfg.acc_m[1] for f in fixes)
        assert all(f.speed_mps >= 0.0 and 0.0 <= f.heading_deg < 360.0 for f in fixes)
    assert moving.along_m > 0.0


def test_outliers_land_30_to_80_m_from_the_truth(plans: list[RoutePlan]) -> None:
    """With outlier_prob=1 every fix is 30-80 m off yet reports an ordinary accuracy."""
    cfg = MotionConfig(outlier_prob=1.0)
    plan = plans[0]
    fixes = _fixes(Drive(plan.coords, plan.road_speeds_mps, random.Random(13), cfg), 2000, 0.2)
    errors_m = [_error_m(f) for f in fixes]
    assert 29.9 <= min(errors_m) and max(errors_m) <= 80.1
    assert all(cfg.acc_m[0] <= f.acc_m <= cfg.acc_m[1] for f in fixes)


def test_fix_reports_the_true_position_alongside_the_noisy_one(plans: list[RoutePlan]) -> None:
    """true_lon/true_lat is the car's position, in lon/lat order."""
    plan = plans[0]
    drive = Drive(plan.coords, plan.road_speeds_mps, random.Random(14))
    drive.step(20.0)
    fix = drive.observe()
    assert (fix.true_lon, fix.true_lat) == (drive.lon, drive.lat)
    assert 24.0 < fix.lon < 26.0 and 59.0 < fix.lat < 61.0


def test_stopped_phone_keeps_its_last_heading(plans: list[RoutePlan]) -> None:
    """While the car stands at the end, every fix repeats the last heading reported."""
    plan = plans[0]
    drive = Drive(plan.coords, plan.road_speeds_mps, random.Random(15))
    last_heading_deg = 0.0
    while not drive.done:
        drive.step(DT_S)
        if drive.speed_mps > 0.0:
            last_heading_deg = drive.observe().heading_deg
    assert {drive.observe().heading_deg for _ in range(20)} == {last_heading_deg}


def test_same_seed_gives_identical_fixes(plans: list[RoutePlan]) -> None:
    """Two drives with the same seed report the same fixes; another seed does not."""
    plan = plans[3]
    first, second, other = (
        _fixes(Drive(plan.coords, plan.road_speeds_mps, random.Random(seed)), 300, 1.0)
        for seed in (21, 21, 22)
    )
    assert first == second
    assert first != other


def test_step_rejects_a_non_positive_dt() -> None:
    """dt must be > 0: time does not run backwards in the simulator."""
    drive = Drive(L_COORDS, L_SPEEDS, random.Random(1))
    for dt_s in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError):
            drive.step(dt_s)


def test_degenerate_route_is_done_at_once() -> None:
    """A zero-length route (origin and destination on one spot) is done at once, stopped."""
    drive = Drive([L_START, L_START], [8.0], random.Random(1), initial_speed_mps=5.0)
    assert drive.done and drive.speed_mps == 0.0 and drive.length_m == 0.0
    fix = drive.observe()
    assert (fix.true_lon, fix.true_lat) == pytest.approx(L_START)


@settings(max_examples=60, deadline=None)
@given(
    dts_s=st.lists(st.floats(min_value=0.1, max_value=2.0), min_size=1, max_size=300),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    initial_speed_mps=st.floats(min_value=0.0, max_value=15.0),
)
def test_any_step_sequence_keeps_progress_monotone_and_speed_non_negative(
    plans: list[RoutePlan], dts_s: list[float], seed: int, initial_speed_mps: float
) -> None:
    """Whatever the step sizes, along_m never decreases, speed is never negative,
    and simulated time is the sum of the steps until arrival."""
    plan = plans[4]
    drive = Drive(
        plan.coords,
        plan.road_speeds_mps,
        random.Random(seed),
        MotionConfig(stop_every_m=150.0),
        initial_speed_mps=initial_speed_mps,
    )
    along_m = drive.along_m
    total_s = 0.0
    for dt_s in dts_s:
        drive.step(dt_s)
        total_s += dt_s
        assert drive.along_m >= along_m
        assert drive.speed_mps >= 0.0
        assert drive.along_m <= drive.length_m
        if not drive.done:
            assert drive.elapsed_s == pytest.approx(total_s)
        along_m = drive.along_m


# --- traffic signals --------------------------------------------------------


def _signal_positions_m(plan: RoutePlan) -> list[float]:
    route = Route(plan.coords)
    cum_m = cumulative_m([route.proj.to_xy(lon, lat) for lon, lat in route.coords])
    return [cum_m[index] for index in plan.signals]


@pytest.fixture(scope="module")
def signal_plan(router: GraphRouter) -> RoutePlan:
    """A route through at least three traffic signals."""
    for plan in _long_routes(router, seed=31, count=20):
        if len(plan.signals) >= 3:
            return plan
    raise AssertionError("no route of 20 passes three signals")


def test_motion_defaults_match_the_routers_traffic_model() -> None:
    """The world's lights are the router's: same red chance and waits; random stops rare."""
    cfg = MotionConfig()
    assert (cfg.red_prob, cfg.red_wait_s) == (P_RED, RED_WAIT_S) == (0.45, (5.0, 30.0))
    assert cfg.stop_every_m == 2000.0
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError):
            MotionConfig(red_prob=bad)
    with pytest.raises(ValueError):
        MotionConfig(red_wait_s=(30.0, 5.0))


def test_drive_for_plan_puts_the_lights_at_the_plans_signal_vertices(
    signal_plan: RoutePlan,
) -> None:
    """With every light red the planned stops are exactly at the signal vertices."""
    cfg = MotionConfig(stop_every_m=math.inf, red_prob=1.0)
    drive = drive_for_plan(signal_plan, random.Random(1), cfg)
    assert drive.stop_positions_m == pytest.approx(_signal_positions_m(signal_plan))
    assert drive.length_m == pytest.approx(signal_plan.distance_m, rel=1e-3)


@pytest.mark.parametrize("dt_s", [DT_S, 0.2])
def test_car_stands_at_every_red_light_for_at_least_the_shortest_wait(
    signal_plan: RoutePlan, dt_s: float
) -> None:
    """red_prob=1: the car stops on each signal's position and stands there, speed 0,
    for at least red_wait_s[0] before driving on."""
    cfg = MotionConfig(stop_every_m=math.inf, red_prob=1.0)
    samples = _drive(drive_for_plan(signal_plan, random.Random(2), cfg), dt_s)
    for signal_m in _signal_positions_m(signal_plan):
        standing = [s for s in samples if s.along_m == signal_m and s.speed_mps == 0.0]
        assert standing, f"no stop at the signal {signal_m:.1f} m along"
        # Sampled every dt_s, the stand is seen for at least its length minus one step.
        assert standing[-1].elapsed_s - standing[0].elapsed_s >= cfg.red_wait_s[0] - dt_s
    assert samples[-1].along_m == pytest.approx(signal_plan.distance_m, rel=1e-3)


def test_car_drives_through_green_lights_without_stopping(signal_plan: RoutePlan) -> None:
    """red_prob=0 and no random stops: the speed is never 0 between start and end."""
    cfg = MotionConfig(stop_every_m=math.inf, red_prob=0.0)
    drive = drive_for_plan(signal_plan, random.Random(3), cfg)
    assert drive.stop_positions_m == ()
    samples = _drive(drive)
    assert all(s.speed_mps > 0.0 for s in samples if 0.0 < s.along_m < drive.length_m)


def test_green_drive_takes_the_routers_expected_driving_time() -> None:
    """All green, no stops, driver factor 1: the world drives an L-shaped route with a
    light in the time the router's speed profile predicts (turn, start, end included)."""
    cfg = MotionConfig(stop_every_m=math.inf, red_prob=0.0, speed_factor=(1.0, 1.0))
    drive = Drive(L_COORDS, L_SPEEDS, random.Random(4), cfg, signals_m=[150.0])
    _drive(drive, 0.05)
    route = Route(L_COORDS)
    xy = [route.proj.to_xy(lon, lat) for lon, lat in route.coords]
    expected_s = sum(SpeedProfile(xy, L_SPEEDS).segment_times_s(len(L_SPEEDS)))
    assert drive.elapsed_s == pytest.approx(expected_s, rel=0.01)


def test_router_expected_times_match_the_simulated_world(router: GraphRouter) -> None:
    """Over seeded routes with default drivers, lights and stops, elapsed / planned
    duration has a median near 1 (the router counts what the world does)."""
    ratios = []
    for seed, plan in enumerate(_long_routes(router, seed=77, count=40)):
        drive = drive_for_plan(plan, random.Random(seed))
        _drive(drive, 1.0)
        ratios.append(drive.elapsed_s / plan.duration_s)
    ratios.sort()
    median = (ratios[19] + ratios[20]) / 2
    assert 0.93 <= median <= 1.1
