"""Write-behind batching: every write of a process in one pipeline per round trip.

A driver's point is acknowledged only once its write is stored, and each
socket waits for its own write before its next one. Sent one by one, each
write would pay a client's whole per-command path. Here callers queue their
command and wait; one flusher sends whatever has queued as a single
pipeline on its own connection (`RespConnection`), resolves each caller
with its own reply, and meanwhile the next batch gathers. Under load a
batch holds one write per busy socket; when idle a write goes out at the
end of the current event-loop tick, so nothing waits for a timer.

Each call is still one command (one atomic script run with its own
compare-and-set), so batching changes nothing of what a write means: a
batch that fails to reach Redis fails every caller in it (they resend), and
a caller gets its reply only after Redis has applied its write.

On one Redis, `ScriptBatcher` runs the write script through one `Batcher`.
On a Redis Cluster, `store/cluster.py` keeps a `Batcher` per node.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from tracking.store.resp import Endpoint, RespConnection

MAX_BATCH = 256
"""Commands per pipeline: bounds one round trip's size and the latency it adds."""


class Batcher:
    """Sends the commands queued in one event-loop tick as one pipeline on one connection."""

    def __init__(self, endpoint: Endpoint, max_batch: int = MAX_BATCH) -> None:
        self._conn = RespConnection(endpoint)
        self._max_batch = max_batch
        self._pending: list[tuple[Sequence[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.commands = 0

    async def call(self, command: Sequence[Any]) -> Any:
        """The command's reply once Redis has run it; an error reply is raised
        (redis-py's ResponseError, NoScriptError for NOSCRIPT)."""
        return await self.submit(command)

    def submit(self, command: Sequence[Any]) -> asyncio.Future[Any]:
        """Queue `command` now (commands go out in the order queued); its reply's future."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="write-batcher")
        return future

    async def _flush(self) -> None:
        # Yield once so that commands queued in this same tick join the batch.
        await asyncio.sleep(0)
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                replies = await self._conn.execute([command for command, _ in batch])
            except BaseException as exc:  # a failed round trip fails each caller in it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.batches += 1
            self.commands += len(batch)
            for (_, future), reply in zip(batch, replies, strict=True):
                if future.done():  # its caller gave up; the write stands
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def close(self) -> None:
        await self._conn.close()


class ScriptBatcher:
    """Runs one Lua script for many callers, pipelined per flush."""

    def __init__(self, redis: Redis, source: str, max_batch: int = MAX_BATCH) -> None:
        self._batcher = Batcher(Endpoint(redis), max_batch)
        self._script = BatchedScript(source)
        self.writes = 0

    @property
    def batches(self) -> int:
        return self._batcher.batches

    async def call(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply for these keys and args, once Redis has run it."""
        reply = await self._script.run(self._batcher, keys, args)
        self.writes += 1
        return reply

    async def close(self) -> None:
        await self._batcher.close()


class BatchedScript:
    """A Lua script run by SHA through a `Batcher`, loaded on its Redis when needed.

    Until a load has succeeded, `SCRIPT LOAD` is queued just ahead of the
    call, in the same pipeline. A NOSCRIPT reply (Redis restarted, flushed
    its scripts, or a replica took over) means the call did not run: it is
    run again after loading the script.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._loaded: set[Batcher] = set()
        """The batchers whose Redis is known to hold the script."""
        self._loading: dict[Batcher, asyncio.Future[Any]] = {}

    async def run(self, batcher: Batcher, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        if batcher not in self._loaded:
            self._load(batcher)
        try:
            return await batcher.call(command)
        except NoScriptError:
            self._loaded.discard(batcher)
            await self._load(batcher)
            return await batcher.call(command)

    def _load(self, batcher: Batcher) -> asyncio.Future[Any]:
        """Queue one SCRIPT LOAD (unless one is queued already, ahead of this call)."""
        loading = self._loading.get(batcher)
        if loading is not None and not loading.done():
            return loading
        loading = batcher.submit(("SCRIPT", "LOAD", self.source))

        def loaded(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None:
                self._loaded.add(batcher)

        loading.add_done_callback(loaded)
        self._loading[batcher] = loading
        return loading
