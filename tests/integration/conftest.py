"""Real Redis, real gateways (uvicorn subprocesses on free ports), real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.client import Api
from tracking.api.auth import issue_token
from tracking.store.embedded import EmbeddedRedis, free_port, stop_process
from tracking.store.embedded_cluster import LocalCluster

SECRET = "test-secret-" + os.urandom(24).hex()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A real three-master Redis Cluster, shared by the cluster tests."""
    with LocalCluster() as cluster:
        yield cluster


class Gateway:
    def __init__(
        self, redis_url: str, env: dict[str, str], tmp: Path, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "TRACKING_REDIS_URL": redis_url,
            "TRACKING_JWT_SECRET": SECRET,
            "TRACKING_PUBLIC_URL": self.base,
            "TRACKING_MAX_POINTS_PER_S": "1000",
            **env,
        }
        self.log = open(tmp / f"gateway-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracking.cli", "serve", "--port", str(self.port)],
            env=full_env,
            cwd=tmp,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {(tmp / self.log.name).read_text()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("gateway did not become ready in 30 s")

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.log.close()

    def kill(self) -> None:
        """SIGKILL: the process vanishes mid-work, no close frames, no cleanup."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        """SIGTERM: uvicorn's graceful shutdown (stop accepting, close sockets with 1012, drain)."""
        self.proc.send_signal(signal.SIGTERM)

    def problems(self) -> str:
        """Tracebacks and warnings the gateway printed: a served error is a bug."""
        text = Path(self.log.name).read_text(errors="replace")
        bad = [
            line
            for line in text.splitlines()
            if "Traceback" in line or "Warning:" in line or " ERROR " in line
        ]
        return "\n".join(bad[:10]) and text[-4000:]


@pytest.fixture
def start_gateway(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(port: int | None = None, **env: str) -> Gateway:
        gw = Gateway(redis_url, env, tmp_path_factory.mktemp("gw"), port)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
    for gw in started:
        assert not gw.problems(), gw.problems()


@pytest.fixture(scope="module")
def gateway(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(redis_url, {"TRACKING_DWELL_COMPLETE_S": "2"}, tmp_path_factory.mktemp("gw"))
    yield gw
    gw.stop()
    assert not gw.problems(), gw.problems()


def token(role: str, sub: str = "ops", trip: str | None = None, ttl_s: int = 600) -> str:
    return issue_token(SECRET, role, sub, trip=trip, ttl_s=ttl_s)  # type: ignore[arg-type]


@pytest.fixture
def api(gateway: Gateway) -> Api:
    return Api(gateway.base, token("ops"))
