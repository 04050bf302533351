"""ETA: expected road time to the leg's end, corrected by the driver's pace, smoothed.

Like the big ride platforms: a routing baseline (road speeds from OSM) times
a learned correction (here: the driver's recent pace relative to the road),
and the predicted arrival time is low-pass filtered so the number a rider
sees does not jump with every traffic light.
"""

from __future__ import annotations

import math

from tracking.core.route import Route

PACE_MIN = 0.3
PACE_MAX = 1.5
PACE_TAU_S = 90.0
"""Memory of the pace estimate: a red light must not dominate it."""
PACE_WEIGHT = 0.6
"""How much of the pace correction is applied; the rest trusts the road speed."""
ARRIVAL_TAU_S = 6.0
"""Time constant of the arrival-time smoothing."""


def update_pace(pace: float, observed_mps: float, expected_mps: float, dt_s: float) -> float:
    """Blend one observation of the driver's speed into the pace ratio."""
    ratio = min(PACE_MAX, max(PACE_MIN, observed_mps / max(expected_mps, 0.1)))
    alpha = 1.0 - math.exp(-dt_s / PACE_TAU_S)
    return pace + alpha * (ratio - pace)


def estimate_arrival_ms(
    route: Route,
    along_m: float,
    pace: float,
    now_ms: int,
    previous_arrive_ms: int | None,
    dt_s: float,
) -> int:
    """Predicted arrival time (epoch ms) at the end of `route` from `along_m`."""
    effective_pace = 1.0 + PACE_WEIGHT * (pace - 1.0)
    raw_ms = now_ms + 1000.0 * route.time_remaining_s(along_m) / effective_pace
    if previous_arrive_ms is None or dt_s <= 0.0:
        return int(raw_ms)
    beta = 1.0 - math.exp(-dt_s / ARRIVAL_TAU_S)
    return int(previous_arrive_ms + beta * (raw_ms - previous_arrive_ms))
