"""Write-behind batching: every write of a process in one pipeline per round trip.

A driver's point is acknowledged only once its write is stored, and each
socket waits for its own write before its next one. Sent one by one, each
write would pay a client's whole per-command path. Here callers queue their
script call and wait; one flusher sends whatever has queued as a single
pipeline on its own connection (`RespConnection`), resolves each
caller with its own reply, and meanwhile the next batch gathers. Under load
a batch holds one write per busy socket; when idle a write goes out at the
end of the current event-loop tick, so nothing waits for a timer.

Each call is still one atomic script run with its own compare-and-set, so
batching changes nothing of what a write means: a batch that fails to
reach Redis fails every caller in it (they resend), and a caller gets its
reply only after Redis has applied its write.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from tracking.store.resp import RespConnection

MAX_BATCH = 256
"""Writes per pipeline: bounds one round trip's size and the latency it adds."""


class ScriptBatcher:
    """Runs one Lua script for many callers, pipelined per flush."""

    def __init__(self, redis: Redis, source: str, max_batch: int = MAX_BATCH) -> None:
        self._conn = RespConnection(redis)
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()
        self._max_batch = max_batch
        self._pending: list[tuple[Sequence[Any], Sequence[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.writes = 0

    async def call(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply for these keys and args, once Redis has run it."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="write-batcher")
        return await future

    async def _flush(self) -> None:
        # Yield once so that writes queued in this same tick join the batch.
        await asyncio.sleep(0)
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                replies = await self._run(batch)
            except BaseException as exc:  # a failed round trip fails each caller in it
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.batches += 1
            self.writes += len(batch)
            for (_, _, future), reply in zip(batch, replies, strict=True):
                if future.done():  # its caller gave up; the write stands
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def _run(self, batch: list[tuple[Sequence[Any], Sequence[Any], Any]]) -> list[Any]:
        replies = await self._pipeline(batch)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            # Redis restarted or flushed its scripts: a NOSCRIPT write did not
            # run, so running it again after loading the script is safe.
            await self._conn.execute([["SCRIPT", "LOAD", self._source]])
            again = await self._pipeline([batch[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, batch: list[tuple[Sequence[Any], Sequence[Any], Any]]) -> list[Any]:
        return await self._conn.execute(
            [("EVALSHA", self._sha, len(keys), *keys, *args) for keys, args, _ in batch]
        )

    async def close(self) -> None:
        await self._conn.close()
