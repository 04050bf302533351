"""A minimal asyncio Socket.IO v4 client (Engine.IO v4, Socket.IO protocol v5).

WebSocket transport only, default namespace only, no binary packets: just
enough for the benchmark's load generator to drive a Socket.IO server at the
same per-message cost in Python as every other target. Frames:

    0{...}       Engine.IO open (server)      2 / 3    Engine.IO ping / pong
    40 / 40{..}  namespace connect / done     44{...}  connect error
    42[ev,data]  event                        42<id>[ev,data]  event asking an ack
    43<id>[...]  ack with its arguments       41       namespace disconnect

    client = await SocketIOClient.connect(
        "ws://127.0.0.1:P/socket.io/?EIO=4&transport=websocket&role=driver&trip=t1"
    )
    await client.emit("pos", {"seq": 1}, ack_id=1)
    kind, key, value = await client.recv()   # ("ack", 1, [{"seq": 1}])
"""

from __future__ import annotations

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.frames import Close

__all__ = ["ConnectionClosed", "SocketIOClient", "SocketIOError"]


class SocketIOError(Exception):
    """The server refused the namespace connection (44) or broke the protocol."""


class SocketIOClient:
    def __init__(self, ws: ClientConnection, sid: str, open_info: dict[str, object]) -> None:
        self.ws = ws
        self.sid = sid
        self.open_info = open_info

    @classmethod
    async def connect(cls, url: str, open_timeout: float = 10.0) -> SocketIOClient:
        """Open the WebSocket and connect to the default namespace."""
        ws = await connect(url, compression=None, max_size=2**20, open_timeout=open_timeout)
        try:
            opened = await ws.recv()
            if not isinstance(opened, str) or not opened.startswith("0"):
                raise SocketIOError(f"expected an Engine.IO open packet, got {opened!r}")
            open_info = orjson.loads(opened[1:])
            await ws.send("40")
            while True:
                frame = await ws.recv()
                if frame == "2":
                    await ws.send("3")
                elif isinstance(frame, str) and frame.startswith("40"):
                    connected = orjson.loads(frame[2:]) if len(frame) > 2 else {}
                    return cls(ws, connected.get("sid", ""), open_info)
                elif isinstance(frame, str) and frame.startswith("44"):
                    raise SocketIOError(f"connect error: {frame[2:]}")
                else:
                    raise SocketIOError(f"unexpected frame during handshake: {frame!r}")
        except BaseException:
            await ws.close()
            raise

    async def emit(self, event: str, data: object, ack_id: int | None = None) -> None:
        """Send an event, asking for an ack `43<ack_id>[...]` when `ack_id` is given."""
        body = orjson.dumps([event, data]).decode()
        await self.ws.send("42" + body if ack_id is None else f"42{ack_id}{body}")

    async def recv(self) -> tuple[str, object, object]:
        """The next application packet: `("event", name, data)` or `("ack", id, args)`.

        Answers Engine.IO pings on the way. Raises `ConnectionClosed` when the
        socket closes, also on a namespace disconnect or Engine.IO close.
        """
        ws = self.ws
        while True:
            frame = await ws.recv()
            if not isinstance(frame, str) or not frame:
                raise SocketIOError(f"unsupported frame {frame!r}")
            kind = frame[0]
            if kind == "4":
                packet = frame[1:2]
                if packet == "2":  # event, maybe with an id we do not answer
                    body = orjson.loads(frame[frame.index("[", 2) :])
                    return ("event", body[0], body[1] if len(body) > 1 else None)
                if packet == "3":
                    split = frame.index("[", 2)
                    return ("ack", int(frame[2:split]), orjson.loads(frame[split:]))
                if packet == "1":  # the server disconnected us from the namespace
                    await ws.close()
                    raise ConnectionClosedOK(Close(1000, "namespace disconnect"), None)
                if packet == "4":
                    raise SocketIOError(f"error: {frame[2:]}")
                raise SocketIOError(f"unsupported Socket.IO packet {frame[:16]!r}")
            if kind == "2":
                await ws.send("3" + frame[1:])
            elif kind == "1":
                await ws.close()
                raise ConnectionClosedOK(Close(1000, "engine.io close"), None)
            elif kind != "6":  # noop
                raise SocketIOError(f"unsupported Engine.IO packet {frame[:16]!r}")

    async def close(self) -> None:
        """Leave the namespace and close the WebSocket."""
        try:
            await self.ws.send("41")
        except ConnectionClosed:
            pass
        await self.ws.close()
