"""Resend storms: bursts of full batches, then the same and overlapping ones on two sockets.

What a fleet replaying after an outage does, and a reconnect that overlaps
the old socket: each seq must be stored once and in order, and every
socket's acks must be cumulative up to the last seq.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect

from driver_sim.audit import audit_points
from driver_sim.drill import DROPOFF, PICKUP, drive_path, ws_base
from tracking.api.auth import issue_token


@dataclass(frozen=True, slots=True)
class StormResult:
    """One driver of a resend storm: the acks each of its two sockets got, and its trail."""

    driver_id: str
    acks: tuple[list[int], list[int]]
    trail: list[int]
    last_seq: int

    @property
    def problems(self) -> list[str]:
        """Everything that breaks the contract: must be empty."""
        found = []
        expected = list(range(1, self.last_seq + 1))
        if self.trail != expected:
            points = audit_points(expected, self.trail)
            found.append(
                f"{self.driver_id}: trail of {len(self.trail)} points, {len(points.lost)} "
                f"missing, {points.duplicates} duplicates, {points.disordered} out of order"
            )
        for i, got in enumerate(self.acks):
            if got != sorted(got) or not got or got[-1] != self.last_seq:
                found.append(f"{self.driver_id}: socket {i} acks {got} (not cumulative to the end)")
        return found


def storm_batch(seqs: range, path: Sequence[tuple[float, float]], ts0: int) -> str:
    """A pos_batch of `seqs`: point `s` at `path[s]` (or the path's end), `ts0 + s` seconds."""
    points = []
    for s in seqs:
        lon, lat = path[min(s, len(path) - 1)]
        points.append({"seq": s, "ts": ts0 + 1000 * s, "lon": lon, "lat": lat, "acc": 5.0})
    return orjson.dumps({"type": "pos_batch", "points": points}).decode()


async def read_acks(ws: Any, count: int, timeout_s: float = 30.0) -> list[int]:
    """The next `count` acks on a driver socket (one per batch); an error frame raises."""
    got: list[int] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < count:
            frame = orjson.loads(await ws.recv())
            if frame["type"] == "error":
                raise RuntimeError(f"error frame in a storm: {frame}")
            if frame["type"] == "ack":
                got.append(frame["seq"])
    return got


async def resend_storm(
    bases: Sequence[str], secret: str, drivers: int, prefix: str, timeout_s: float = 60.0
) -> list[StormResult]:
    """Bursts and resend storms on two gateways, every driver at once.

    Each driver sends two 500-point batches (seqs 1–1000) on a socket to the
    first gateway. Then, on that socket and on a second one to the other
    gateway at the same time, it sends the same batches again, overlapping
    ones (251–750, 751–1250) and new points (1001–1500) on both: what a
    reconnect that overlaps the old socket does. Each seq must be stored once,
    in order, and both sockets' acks must be cumulative and end at 1500.
    """
    ops = issue_token(secret, "ops", "storm-ops", ttl_s=3600)
    run = f"{prefix}-{secrets.token_hex(4)}"
    ts0 = time.time_ns() // 1_000_000 - 3_600_000
    first, second = ws_base(bases[0]), ws_base(bases[-1])
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {ops}"}) as http:

        async def one_driver(i: int) -> StormResult:
            driver_id = f"{run}-d{i}"
            body = {
                "pickup": {"lon": PICKUP[0], "lat": PICKUP[1]},
                "dropoff": {"lon": DROPOFF[0], "lat": DROPOFF[1]},
                "driver_id": driver_id,
            }
            created = await http.post(f"{bases[0]}/v1/trips", json=body)
            if created.status_code != 201:
                raise RuntimeError(f"creating a trip: {created.text}")
            trip = created.json()
            path = drive_path(trip["route"]["coordinates"])

            def frames(*spans: tuple[int, int]) -> list[str]:
                return [storm_batch(range(lo, hi + 1), path, ts0) for lo, hi in spans]

            token = issue_token(secret, "driver", driver_id, ttl_s=3600)
            query = f"/v1/drivers/ws?token={token}"
            async with connect(first + query) as one:
                for frame in frames((1, 500), (501, 1000)):
                    await one.send(frame)
                acks_one = await read_acks(one, 2, timeout_s)
                async with connect(second + query) as two:
                    for a, b in zip(
                        frames((1, 500), (251, 750), (1001, 1500)),
                        frames((501, 1000), (751, 1250), (1001, 1500)),
                        strict=True,
                    ):
                        await asyncio.gather(one.send(a), two.send(b))
                    more_one, acks_two = await asyncio.gather(
                        read_acks(one, 3, timeout_s), read_acks(two, 3, timeout_s)
                    )
            trail = (await http.get(f"{bases[-1]}/v1/trips/{trip['id']}/trail")).json()
            seqs = [int(s) for s in trail["properties"]["seqs"]]
            return StormResult(driver_id, (acks_one + more_one, acks_two), seqs, 1500)

        async with asyncio.timeout(timeout_s):
            return list(await asyncio.gather(*(one_driver(i) for i in range(drivers))))
