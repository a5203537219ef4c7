"""Start and stop ragway services as real subprocesses (as `ragway up` and production do).

The one process harness of the repository: the tests' fixtures and the benchmarks (through
`bench/harness.py`) both start services here. A service's stdout and stderr go to one log file;
stopping it also ends what it started (vLLM's EngineCore and workers) if it left them behind.
Services stay in the caller's process group on purpose: `timeout pytest ...` and Ctrl-C signal
the whole group, so a killed test run or benchmark takes its services with it.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
RAGWAY = str(Path(sys.executable).parent / "ragway")
LOG_DIR = ROOT / "test-artifacts" / "logs"
SERVING = health_pb2.HealthCheckResponse.SERVING


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A running service process and where its log goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `sig` (SIGKILL after `timeout`), then SIGKILL whatever it started that is still
        running; the service's exit code (negative: the signal that ended it)."""
        try:
            # Listed first: once the service has exited, its orphans no longer lead back to it.
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        if self.alive():
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for child in descendants:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(descendants, timeout=10)
        return int(self.process.returncode)


def start(name: str, command: str | list[str], env: dict[str, str], log_path: Path | None = None) -> Service:
    """Start `ragway <command>` (or the full argv `command`) with `env` on top of ours, offline.

    Output goes to `log_path`, by default `test-artifacts/logs/<name>.log`."""
    argv = [RAGWAY, command] if isinstance(command, str) else command
    log_path = log_path or LOG_DIR / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return Service(name, process, log_path)


def wait_until(service: Service, ready: Callable[[], bool], timeout: float) -> None:
    """Poll `ready` until it holds; raise with the log's tail if the service exits first or the
    timeout passes (then the service is stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(
                f"{service.name} exited with {service.process.returncode}:\n{service.log()[-4000:]}"
            )
        if ready():
            return
        time.sleep(0.5)
    service.stop()
    raise TimeoutError(f"{service.name} not ready after {timeout:.0f} s:\n{service.log()[-4000:]}")


def grpc_health(address: str) -> int | None:
    """The overall health status, or None when nothing answers."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        except grpc.RpcError:
            return None
        return int(reply.status)


def grpc_serving(address: str) -> bool:
    return grpc_health(address) == SERVING


def http_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class GatewayProcess:
    service: Service
    url: str
    admin_key: str


def start_gateway_process(
    name: str,
    data_dir: Path,
    model_addr: str,
    retrieval_addr: str,
    *,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
    drain_seconds: int = 10,
    log_path: Path | None = None,
) -> GatewayProcess:
    """One gateway (uvicorn, one process) on a free port with an admin key of its own, ready once
    /healthz answers; stopped again if it never does. `env` goes on top of what it is given here."""
    port = free_port()
    admin_key = "rgw_" + secrets.token_urlsafe(32)
    full_env = {
        "RAGWAY_PORT": str(port),
        "RAGWAY_DATA_DIR": str(data_dir),
        "RAGWAY_ADMIN_KEY": admin_key,
        "RAGWAY_MODEL_SERVICE_ADDR": model_addr,
        "RAGWAY_RETRIEVAL_SERVICE_ADDR": retrieval_addr,
        "RAGWAY_DRAIN_SECONDS": str(drain_seconds),
        **({"RAGWAY_DATABASE_URL": database_url} if database_url else {}),
        **(env or {}),
    }
    service = start(name, "gateway", full_env, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(service, lambda: http_ready(f"{url}/healthz"), 120)
    except BaseException:
        service.stop()
        raise
    return GatewayProcess(service, url, admin_key)
