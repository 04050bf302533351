"""The `tracking` command: serve, demo, token."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import os
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tracking.logs import install_redaction
from tracking.settings import Settings

if TYPE_CHECKING:
    from tracking.api.app import Gateway

log = logging.getLogger("tracking")


@contextlib.contextmanager
def redis_for(settings: Settings) -> Iterator[str]:
    """The configured Redis URL, or an embedded redis-server for as long as we run."""
    if settings.redis_url:
        yield settings.redis_url
        return
    from tracking.store.embedded import EmbeddedRedis

    with EmbeddedRedis() as embedded:
        log.info("TRACKING_REDIS_URL is unset: started embedded redis at %s", embedded.url)
        yield embedded.url


def _serve(
    host: str, port: int, settings: Settings, banner: str | None = None, workers: int = 1
) -> int:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    with redis_for(settings) as url:
        # Workers are spawned with this environment: one Redis, one public
        # URL and one JWT secret for all of them.
        os.environ["TRACKING_REDIS_URL"] = url
        if not settings.public_url or "TRACKING_PUBLIC_URL" not in os.environ:
            os.environ["TRACKING_PUBLIC_URL"] = f"http://{host}:{port}"
        # Create (and announce) the dev secret once, here.
        os.environ["TRACKING_JWT_SECRET"] = settings.resolved_jwt_secret()
        if banner:
            print(banner)
        config = uvicorn.Config(
            "tracking.cli:gateway_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            ws_max_size=64 * 1024,
            # Browsers always offer permessage-deflate; its zlib state costs
            # ~44 KB per socket, and our frames are a few hundred bytes.
            ws_per_message_deflate=False,
            ws_ping_interval=20,
            timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
            log_level="info",
            access_log=False,
        )
        install_redaction()  # after uvicorn has set up its log handlers
        sock = _listen(host, port, settings.socket_send_buffer_bytes)
        if workers == 1:
            uvicorn.Server(config).run(sockets=[sock])
            return 0
        # What `uvicorn.run(workers=N)` does, with our socket: spawned worker
        # processes accept on it, each a whole gateway. SIGTERM/SIGINT: each
        # worker drains (1012) and exits, then the parent. SIGHUP restarts the
        # workers one by one; SIGTTIN/SIGTTOU add or remove one.
        supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
        if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
            return STARTUP_FAILURE
    return 0


def gateway_app() -> Gateway:
    """The app factory uvicorn calls in the serving process (each worker's, too).

    A spawned worker has only uvicorn's logging configured: give it ours
    and the token redaction before the app logs anything.
    """
    from tracking.api.app import app_from_env

    _configure_logging()
    install_redaction()
    _tune_gc()
    return app_from_env()


GC_YOUNG_THRESHOLD = 50_000
"""Allocations between young collections (CPython's default is 700)."""


def _tune_gc() -> None:
    """Fewer, larger young collections, so that full ones become rare.

    A gateway with a few thousand sockets tracks ~500,000 objects, and a
    full collection of them stalls the event loop for 0.1-0.5 s on a shared
    vCPU: every delivery in flight is late (docs/performance.md). With
    CPython's default threshold, short-lived objects that happen to be alive
    at a young collection (a write awaiting Redis, a frame being sent) are
    promoted, and enough promotions trigger a full collection every few
    seconds. With 50,000, they have died by the next young collection.
    """
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per HTTP request of our own clients (the simulator) drowns the
    # demo's output; their failures still show as warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _listen(host: str, port: int, send_buffer_bytes: int) -> socket.socket:
    """The listening socket; accepted connections inherit its send buffer size.

    A fixed kernel send buffer (instead of autotuning up to 4 MiB per
    socket) keeps the memory of 10 000 sockets predictable, and makes a
    reader that stops reading block our send within a few hundred kB, so
    that its feed conflates and, past TRACKING_SEND_TIMEOUT_S, is closed.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


def _try_it_banner(host: str, port: int, settings: Settings) -> str:
    from tracking.api.auth import issue_token

    secret = settings.resolved_jwt_secret()
    ops = issue_token(secret, "ops", "ops-demo", ttl_s=86_400)
    driver = issue_token(secret, "driver", "d-1", ttl_s=86_400)
    base = f"http://{host}:{port}"
    return f"""
Tracking service at {base}  (API docs: {base}/docs)

1. Create a trip (ops) with a driver, in central Helsinki:
   curl -s -X POST {base}/v1/trips -H 'Authorization: Bearer {ops}' \\
     -H 'Content-Type: application/json' \\
     -d '{{"pickup":{{"lon":24.9384,"lat":60.1699}},'\
'"dropoff":{{"lon":24.9496,"lat":60.1733}},"driver_id":"d-1"}}'
   The answer has a rider_token and a share_url.

2. Stream positions as driver d-1 (any WebSocket client, e.g. `python -m websockets`):
   ws://{host}:{port}/v1/drivers/ws?token={driver}
   send: {{"type":"pos","seq":1,"ts":<epoch ms>,"lon":24.9384,"lat":60.1699}}

3. Watch the trip as the rider:
   ws://{host}:{port}/v1/trips/<trip id>/ws?token=<rider_token>
   or SSE: curl -N '{base}/v1/trips/<trip id>/events?token=<rider_token>'

Mint more tokens with: .venv/bin/tracking token ops|driver|rider --sub ID [--trip ID]
Ctrl-C stops everything.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracking", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway (embedded Redis if unset)")
    demo = sub.add_parser("demo", help="Redis, the gateway and simulated drivers (make run)")
    for p in (serve, demo):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="gateway processes accepting on the one port (1)",
    )
    demo.add_argument("--drivers", type=int, default=20, help="simulated drivers (20)")
    demo.add_argument("--speedup", type=float, default=1.0, help="simulated time per second")
    token = sub.add_parser("token", help="print a JWT signed with the configured secret")
    token.add_argument("role", choices=["ops", "driver", "rider"])
    token.add_argument("--sub", help="subject: the driver id for drivers")
    token.add_argument("--trip", help="trip id (required for riders)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    args = parser.parse_args(argv)

    _configure_logging()
    settings = Settings()
    if args.command == "token":
        return _token(parser, args, settings)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a port number")
    if args.command == "demo":
        from driver_sim.demo import run_demo

        return run_demo(args.host, args.port, drivers=args.drivers, speedup=args.speedup)
    banner = _try_it_banner(args.host, args.port, settings) if sys.stdout.isatty() else None
    return _serve(args.host, args.port, settings, banner, workers=args.workers)


def _token(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    from tracking.api.auth import issue_token

    if args.role == "rider" and not args.trip:
        parser.error("a rider token needs --trip")
    if args.role == "driver" and not args.sub:
        parser.error("a driver token needs --sub DRIVER_ID")
    if args.ttl <= 0:
        parser.error("--ttl must be positive")
    sub = args.sub or (f"rider:{args.trip}" if args.role == "rider" else "ops")
    print(
        issue_token(settings.resolved_jwt_secret(), args.role, sub, trip=args.trip, ttl_s=args.ttl)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
