"""A bare RESP connection for the hot write path: pipelined commands, nothing else.

redis-py spends ~160 µs of client CPU on a one-command pipeline here
(pool checkout, retry wrapper, per-command bookkeeping), four times the
whole round trip over a plain socket. The write batcher sends several
thousand batches a second through this instead: commands packed into one
buffer, replies parsed by hiredis, in order. Connection settings (host or
unix path, TLS, password, db, timeouts, the retry policy) are taken from
the redis-py client the rest of the store uses, so both reach the same
Redis the same way.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

READ_CHUNK = 1 << 16


def pack(command: Sequence[Any]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(command)]
    for part in command:
        if isinstance(part, bytes):
            data = part
        elif isinstance(part, str):
            data = part.encode()
        else:
            data = str(part).encode()
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(out)


def _reply(value: Any) -> Any:
    """hiredis error replies as redis-py's exceptions (returned, not raised)."""
    if isinstance(value, hiredis.ReplyError):
        text = str(value)
        return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)
    return value


class Endpoint:
    """How to reach the Redis a redis-py client reaches: address, TLS, password, db, timeouts."""

    def __init__(self, like: Redis) -> None:
        pool = like.connection_pool
        self._setup(dict(pool.connection_kwargs), pool.connection_class)

    @classmethod
    def of_node(cls, node: ClusterNode) -> Endpoint:
        """One node of a Redis Cluster, reached as the cluster client reaches it."""
        endpoint = cls.__new__(cls)
        endpoint._setup(
            {**node.connection_kwargs, "host": node.host, "port": node.port},
            node.connection_class,
        )
        return endpoint

    @property
    def address(self) -> str:
        k = self.kwargs
        return k["path"] if self.unix else f"{k.get('host', 'localhost')}:{k.get('port', 6379)}"

    def _setup(self, kwargs: dict[str, Any], connection_class: type) -> None:
        self.kwargs = kwargs
        self.unix = issubclass(connection_class, UnixDomainSocketConnection)
        self.tls = issubclass(connection_class, SSLConnection)
        self.timeout_s: float = self.kwargs.get("socket_timeout") or 5.0
        self.connect_timeout_s: float = self.kwargs.get("socket_connect_timeout") or 5.0
        self.retry: Retry = self.kwargs.get("retry") or Retry(NoBackoff(), 0)

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connected, authenticated stream (db selected).

        Raises: redis-py's ConnectionError if Redis cannot be reached or refuses us.
        """
        k = self.kwargs
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.unix:
                    reader, writer = await asyncio.open_unix_connection(k["path"])
                else:
                    context = ssl.create_default_context() if self.tls else None
                    reader, writer = await asyncio.open_connection(
                        k.get("host", "localhost"), k.get("port", 6379), ssl=context
                    )
                hello: list[list[Any]] = []
                if k.get("password"):
                    user = k.get("username")
                    hello.append(["AUTH", user, k["password"]] if user else ["AUTH", k["password"]])
                if k.get("db"):
                    hello.append(["SELECT", k["db"]])
                if hello:
                    writer.write(b"".join(pack(c) for c in hello))
                    replies = await read_replies(reader, hiredis.Reader(), len(hello))
                    refused = [r for r in replies if isinstance(r, ResponseError)]
                    if refused:
                        writer.close()
                        raise RedisConnectionError(f"redis refused the connection: {refused[0]}")
        except (OSError, EOFError, TimeoutError) as exc:
            raise RedisConnectionError(f"redis unreachable: {exc or type(exc).__name__}") from exc
        return reader, writer


async def read_replies(reader: asyncio.StreamReader, parser: hiredis.Reader, n: int) -> list[Any]:
    """The next `n` replies off the stream."""
    replies: list[Any] = []
    while len(replies) < n:
        value = parser.gets()
        if value is False:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise EOFError("Redis closed the connection")
            parser.feed(data)
            continue
        replies.append(_reply(value))
    return replies


class RespConnection:
    """One connection to Redis that runs batches of commands, one batch at a time.

    Raises (from `execute`): redis-py's ConnectionError once the retry
    policy gives up on an unreachable Redis, its TimeoutError when a reply
    takes longer than the socket timeout.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = hiredis.Reader()
        self._lock = asyncio.Lock()

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies of `commands`, sent as one pipeline; error replies come back as
        ResponseError (NoScriptError for NOSCRIPT) in their place."""
        payload = b"".join(pack(c) for c in commands)
        async with self._lock:
            result: list[Any] = await self._endpoint.retry.call_with_retry(
                lambda: self._round_trip(payload, len(commands)),
                self._on_failure,
            )
            return result

    async def close(self) -> None:
        self._drop()

    async def _on_failure(self, _error: Exception) -> None:
        self._drop()  # the next attempt connects afresh

    async def _round_trip(self, payload: bytes, n: int) -> list[Any]:
        timeout_s = self._endpoint.timeout_s
        try:
            if self._writer is None:
                self._reader, self._writer = await self._endpoint.open()
                self._parser = hiredis.Reader()
            assert self._reader is not None
            self._writer.write(payload)
            async with asyncio.timeout(timeout_s):
                return await read_replies(self._reader, self._parser, n)
        except TimeoutError:
            self._drop()
            raise RedisTimeoutError(f"no reply from Redis in {timeout_s:g} s") from None
        except (OSError, EOFError, hiredis.ProtocolError) as exc:
            self._drop()
            raise RedisConnectionError(f"redis connection lost: {exc}") from exc

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
