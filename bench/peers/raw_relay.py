"""The ceiling: a bare `websockets` relay with no parsing, no Redis, no logic.

Drivers connect to `/drive?trip=T` and each frame they send is forwarded,
byte for byte, to every socket on `/ride?trip=T`, then answered with one
`a` (an ack the driver counts: frames are answered in order). Run by
bench/throughput.py in its own process:

    python bench/peers/raw_relay.py --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from urllib.parse import parse_qs, urlsplit

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

riders: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    url = urlsplit(ws.request.path if ws.request else "/")
    trip = parse_qs(url.query).get("trip", [""])[0]
    if url.path == "/ride":
        subscribers = riders.setdefault(trip, set())
        subscribers.add(ws)
        try:
            await ws.wait_closed()
        finally:
            subscribers.discard(ws)
        return
    subscribers = riders.setdefault(trip, set())
    async for frame in ws:
        broadcast(subscribers, frame)
        await ws.send("a")


async def main(port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**16):
        print(f"ready {port}", flush=True)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
