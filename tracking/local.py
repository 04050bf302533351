"""A whole local stack for demos and benchmarks: Redis plus a gateway process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import TracebackType

import httpx

from tracking.store.embedded import EmbeddedRedis, free_port, stop_process


class LocalStack:
    """Embedded Redis (unless `redis_url` is given) and `tracking serve` on a free port."""

    def __init__(
        self,
        redis_url: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: dict[str, str] | None = None,
        log_path: str | None = None,
    ) -> None:
        self._redis = None if redis_url else EmbeddedRedis()
        self.redis_url = redis_url or ""
        self.host = host
        self.port = port or free_port()
        self.base = f"http://{host}:{self.port}"
        self.env = env or {}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> LocalStack:
        if self._redis is not None:
            self._redis.start()
            self.redis_url = self._redis.url
        env = {
            **os.environ,
            "TRACKING_REDIS_URL": self.redis_url,
            "TRACKING_PUBLIC_URL": self.base,
            **self.env,
        }
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tracking.cli",
                "serve",
                "--host",
                self.host,
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"gateway exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway not ready within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 15)
        if self._redis is not None:
            self._redis.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
