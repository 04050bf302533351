"""Install and start the Socket.IO + Redis adapter peer (bench/peers/socketio/).

ensure_installed()                     # `npm ci` once, if node_modules is missing
proc = start_peer(redis_url, port)     # returns once it printed `ready <port>`
...
stop_process(proc, 5.0)                # from tracking.store.embedded
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

PEER_DIR = Path(__file__).resolve().parent / "socketio"
SERVER_JS = PEER_DIR / "server.js"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"the Socket.IO peer needs `{name}` (Node.js >= 18) on PATH")
    return found


def ensure_installed() -> None:
    """Run `npm ci` in the peer's folder unless its node_modules is already there."""
    if (PEER_DIR / "node_modules" / ".package-lock.json").exists():
        return
    subprocess.run(
        [_tool("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PEER_DIR,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _die_with_parent() -> None:
    # The kernel sends the peer SIGTERM if the harness dies first (Linux only).
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_peer(
    redis_url: str, port: int, *, host: str = "127.0.0.1", ready_timeout_s: float = 15.0
) -> subprocess.Popen[bytes]:
    """Start server.js on `port` against `redis_url`; return once it is listening.

    Its stderr is inherited; its stdout is a pipe that carries only the ready line.
    Raises RuntimeError (after stopping it) if it exits or is not ready in time.
    """
    proc = subprocess.Popen(
        [_tool("node"), str(SERVER_JS), "--port", str(port), "--redis", redis_url, "--host", host],
        cwd=PEER_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        preexec_fn=_die_with_parent if os.name == "posix" else None,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + ready_timeout_s
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            break
        chunk = os.read(proc.stdout.fileno(), 256)
        if not chunk:
            break
        line += chunk
    if line.strip() != f"ready {port}".encode():
        proc.kill()
        proc.wait()
        raise RuntimeError(
            f"Socket.IO peer not ready on port {port} (exit code {proc.returncode}, "
            f"stdout {line!r})"
        )
    return proc
