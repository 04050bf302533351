"""Prometheus metrics of a gateway process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("tracking_connections", "Open WebSocket/SSE connections", ["kind"])
FRAMES_IN = Counter("tracking_frames_in_total", "Frames received", ["kind"])
FRAMES_OUT = Counter("tracking_frames_out_total", "Frames sent", ["kind"])
POINTS = Counter("tracking_points_total", "Driver points by outcome", ["outcome"])
ERRORS = Counter("tracking_errors_total", "Errors returned to clients", ["code"])
POINT_TO_PUBLISH = Histogram(
    "tracking_point_to_publish_seconds",
    "From receiving a driver frame to its events being stored and published",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
FRAMES_SKIPPED = Counter(
    "tracking_frames_skipped_total",
    "Positions and ETAs a slow reader skipped because a newer one replaced them",
)

# Children bound once: `labels()` costs a lock and a dict lookup per call,
# and these count every frame of the hot paths.
DRIVER_FRAMES_IN = FRAMES_IN.labels("driver")
DRIVER_FRAMES_OUT = FRAMES_OUT.labels("driver")
RIDER_FRAMES_OUT = FRAMES_OUT.labels("rider")
SSE_FRAMES_OUT = FRAMES_OUT.labels("sse")
POINTS_STORED = POINTS.labels("stored")
POINTS_REJECTED = POINTS.labels("rejected")
