"""Client processes for bench/connections.py: idle trip-channel riders, on command.

Each process runs one asyncio loop (uvloop if installed) holding its share
of the rider sockets. The parent drives them all through pipes (`Clients.ask`):
`open` (bounded concurrency; each socket waits for its snapshot), `status`
(open sockets, frames received by type, close codes), `positions` (which
riders of given trips have received a `position` event, and when) and
`close`. A process whose parent is gone closes its sockets and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import signal
import time
from collections import Counter
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

OPEN_TIMEOUT_S = 60.0
Plan = list[tuple[str, str]]
"""(trip id, rider token) per socket."""


class Rider:
    __slots__ = ("trip", "ws", "task", "position_at", "closed")

    def __init__(self, trip: str, ws: ClientConnection) -> None:
        self.trip, self.ws = trip, ws
        self.task: asyncio.Task[None] | None = None
        self.position_at = 0.0
        self.closed = False


def worker(pipe: Any, ws_base: str, plan: Plan, inflight: int, deflate: bool) -> None:
    """A client process: open the riders of `plan` on command, answer status queries."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent cleans up on Ctrl-C
    run: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    run(_worker(pipe, ws_base, plan, inflight, deflate))


async def _worker(pipe: Any, ws_base: str, plan: Plan, inflight: int, deflate: bool) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue()

    def on_pipe() -> None:
        try:
            commands.put_nowait(pipe.recv())
        except (EOFError, OSError):  # the parent is gone
            loop.remove_reader(pipe.fileno())
            commands.put_nowait(("exit",))

    loop.add_reader(pipe.fileno(), on_pipe)
    riders: list[Rider] = []
    kinds: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    sem = asyncio.Semaphore(inflight)

    async def read(r: Rider) -> None:
        try:
            async for raw in r.ws:
                kind = orjson.loads(raw).get("type", "?")
                kinds[kind] += 1
                if kind == "position" and not r.position_at:
                    r.position_at = time.time()
        except ConnectionClosed:
            pass
        finally:
            r.closed = True
            closes[f"{r.ws.close_code} {r.ws.close_reason or ''}".strip()] += 1

    async def open_one(trip: str, token: str) -> None:
        async with sem:
            ws = await connect(
                f"{ws_base}/v1/trips/{trip}/ws?token={token}",
                compression="deflate" if deflate else None,
                ping_interval=None,  # like a browser: only the server pings
                open_timeout=OPEN_TIMEOUT_S,
                max_size=2**22,
            )
            try:
                first = orjson.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
                if first.get("type") != "snapshot":
                    raise RuntimeError(f"first frame {first.get('type')!r}, not a snapshot")
            except BaseException:
                await ws.close()
                raise
        r = Rider(trip, ws)
        kinds["snapshot"] += 1
        r.task = asyncio.create_task(read(r))
        riders.append(r)

    while True:
        cmd = await commands.get()
        if cmd[0] == "open":
            started = time.time()
            results = await asyncio.gather(*(open_one(*p) for p in plan), return_exceptions=True)
            for res in results:
                if isinstance(res, BaseException):
                    errors[f"{type(res).__name__}: {str(res)[:80]}"] += 1
            pipe.send(("opened", len(riders), started, time.time(), dict(errors)))
        elif cmd[0] == "status":
            open_now = sum(not r.closed for r in riders)
            pipe.send(("status", open_now, dict(kinds), dict(closes)))
        elif cmd[0] == "positions":  # per trip: its riders here, when each got a position
            seen: dict[str, list[float]] = {t: [] for t in cmd[1]}
            for r in riders:
                if r.trip in seen:
                    seen[r.trip].append(r.position_at)
            pipe.send(("positions", seen))
        else:  # close or exit
            for r in riders:
                if r.task:
                    r.task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.gather(*(r.ws.close() for r in riders), return_exceptions=True)
            if cmd[0] == "close":
                pipe.send(("closed",))
            return


class Clients:
    """K client processes; `ask` sends one command to all and gathers their answers."""

    def __init__(self, ws_base: str, plans: list[Plan], inflight: int, deflate: bool) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no state of the parent's
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for plan in plans:
            ours, theirs = ctx.Pipe()
            p = ctx.Process(
                target=worker, args=(theirs, ws_base, plan, inflight, deflate), daemon=True
            )
            p.start()
            theirs.close()
            self.pipes.append(ours)
            self.procs.append(p)

    def ask(self, cmd: tuple[Any, ...], timeout_s: float) -> list[tuple[Any, ...]]:
        for pipe in self.pipes:
            pipe.send(cmd)
        deadline = time.monotonic() + timeout_s
        answers = []
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"client process silent for {timeout_s:g} s after {cmd[0]}")
            answers.append(pipe.recv())
        return answers

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ask(("close",), 15)
        for p in self.procs:
            p.join(2)
            if p.is_alive():
                p.terminate()
                p.join(3)
            if p.is_alive():
                p.kill()
                p.join()
