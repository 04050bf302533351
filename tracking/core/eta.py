"""ETA: expected road time to the leg's end, corrected by the driver's pace, smoothed.

Like the big ride platforms: a routing baseline (road speeds from OSM) times
a learned correction. The correction is the driver's pace on this trip
(road-time covered per second driven), shrunk towards a fleet-wide prior
that the service learns from completed legs; the predicted arrival time is
low-pass filtered so the number a rider sees does not jump.
"""

from __future__ import annotations

import math

from tracking.core.route import Route

PACE_MIN = 0.2
PACE_MAX = 2.0
PRIOR_WEIGHT_S = 600.0
"""How many seconds of the driver's own driving the fleet prior is worth."""
DEFAULT_PACE_PRIOR = 1.0
"""Until the fleet has taught it better, trust the router: its expected times
already count lights, turns, starts and stops."""
ARRIVAL_TAU_S = 6.0
"""Time constant of the arrival-time smoothing."""
MAX_GAP_S = 30.0
"""A longer silence says nothing about driving pace (a tunnel, a parked car)."""


def pace(gained_s: float, elapsed_s: float, prior: float) -> float:
    """The driver's pace: road-time covered per second driven, shrunk towards the prior.

    Cumulative rather than a moving average, so a red light counts for what
    it is (a share of the trip), not as a momentary collapse of the ETA.
    """
    estimate = (gained_s + prior * PRIOR_WEIGHT_S) / (elapsed_s + PRIOR_WEIGHT_S)
    return min(PACE_MAX, max(PACE_MIN, estimate))


def estimate_arrival_ms(
    route: Route,
    along_m: float,
    pace: float,
    now_ms: int,
    previous_arrive_ms: int | None,
    dt_s: float,
) -> int:
    """Predicted arrival time (epoch ms) at the end of `route` from `along_m`."""
    raw_ms = now_ms + 1000.0 * route.time_remaining_s(along_m) / pace
    if previous_arrive_ms is None or dt_s <= 0.0:
        return int(raw_ms)
    beta = 1.0 - math.exp(-dt_s / ARRIVAL_TAU_S)
    return int(previous_arrive_ms + beta * (raw_ms - previous_arrive_ms))
