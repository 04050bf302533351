"""Smoke check of the Socket.IO peer and of the eio.py client, in 30 s at most.

Starts an embedded redis-server and two server.js nodes on it (node A, node B),
connects on node A one driver and two riders on trip t1 and one rider on trip
t2, plus one t1 rider on node B (reached only through the Redis adapter).
Sends 100 `pos` events with ack ids, one at a time, and checks: every ack
arrives with its seq, every t1 rider gets exactly the 100 payloads in order,
the t2 rider none; a bad handshake query is refused with a connect error.

    .venv/bin/python bench/peers/smoke_socketio.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from subprocess import Popen

from eio import SocketIOClient, SocketIOError
from socketio_peer import ensure_installed, start_peer

from tracking.store.embedded import EmbeddedRedis, free_port, stop_process

N = 100
TIMEOUT_S = 30.0


def url(port: int, role: str, trip: str) -> str:
    return f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&role={role}&trip={trip}"


async def listen(client: SocketIOClient, got: list[tuple[int, dict[str, object]]]) -> None:
    while True:
        kind, name, data = await client.recv()
        if kind == "event" and name == "pos":
            assert isinstance(data, dict)
            got.append((time.perf_counter_ns(), data))


def ms(ns: list[int]) -> str:
    return f"p50 {statistics.median(ns) / 1e6:.3f} ms, max {max(ns) / 1e6:.3f} ms"


async def run(port_a: int, port_b: int) -> None:
    try:
        await SocketIOClient.connect(url(port_a, "pilot", "t1"))
        raise AssertionError("a bad role was accepted")
    except SocketIOError as exc:
        print(f"bad query refused: {exc}")

    riders = {
        "t1 rider 1 (node A)": await SocketIOClient.connect(url(port_a, "rider", "t1")),
        "t1 rider 2 (node A)": await SocketIOClient.connect(url(port_a, "rider", "t1")),
        "t1 rider 3 (node B)": await SocketIOClient.connect(url(port_b, "rider", "t1")),
        "t2 rider (node A)": await SocketIOClient.connect(url(port_a, "rider", "t2")),
    }
    driver = await SocketIOClient.connect(url(port_a, "driver", "t1"))
    got: dict[str, list[tuple[int, dict[str, object]]]] = {name: [] for name in riders}
    tasks = [asyncio.create_task(listen(c, got[name])) for name, c in riders.items()]

    sent: list[dict[str, object]] = []
    sent_at: list[int] = []
    rtts: list[int] = []
    ts0 = 1_763_700_000_000
    for seq in range(1, N + 1):
        payload = {
            "type": "pos",
            "seq": seq,
            "ts": ts0 + seq * 1000,
            "lon": 24.94 + seq * 1e-5,
            "lat": 60.17 + seq * 1e-5,
        }
        sent.append(payload)
        t0 = time.perf_counter_ns()
        sent_at.append(t0)
        await driver.emit("pos", payload, ack_id=seq)
        kind, ack_id, args = await driver.recv()
        rtts.append(time.perf_counter_ns() - t0)
        assert (kind, ack_id, args) == ("ack", seq, [{"seq": seq}]), (kind, ack_id, args)
    print(f"{N} acks received in order")

    t1 = [name for name in riders if name.startswith("t1")]
    while any(len(got[name]) < N for name in t1):
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.3)  # time for any stray or duplicate frame to show up
    for name in t1:
        assert [data for _, data in got[name]] == sent, f"{name}: wrong payloads or order"
        print(f"{name}: {N}/{N} payloads in order, delivery {ms(delay(got[name], sent_at))}")
    assert got["t2 rider (node A)"] == [], "the t2 rider got t1 payloads"
    print("t2 rider (node A): 0 payloads")
    print(f"driver round trip (emit -> ack) {ms(rtts)}")

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in [driver, *riders.values()]:
        await client.close()


def delay(got: list[tuple[int, dict[str, object]]], sent_at: list[int]) -> list[int]:
    return [at - sent_at[i] for i, (at, _) in enumerate(got)]


def main() -> int:
    ensure_installed()
    procs: list[Popen[bytes]] = []
    with EmbeddedRedis() as redis:
        try:
            port_a, port_b = free_port(), free_port()
            procs.append(start_peer(redis.url, port_a))
            procs.append(start_peer(redis.url, port_b))
            asyncio.run(asyncio.wait_for(run(port_a, port_b), TIMEOUT_S))
        finally:
            for proc in procs:
                stop_process(proc, 5.0)
    codes = [proc.returncode for proc in procs]
    assert codes == [0, 0], f"peer exit codes {codes}"
    print("OK: peers stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
