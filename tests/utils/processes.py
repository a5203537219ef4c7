"""Start ragway services as real subprocesses (as `ragway up` and production do) for tests."""

from __future__ import annotations

import os
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
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
RAGWAY = str(Path(sys.executable).parent / "ragway")
LOG_DIR = ROOT / "test-artifacts" / "logs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A running `ragway <command>` process and where its log goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.alive():
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)


def start(name: str, command: str, env: dict[str, str]) -> Service:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}.log"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [RAGWAY, command], env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    return Service(name, process, log_path)


def wait_until(service: Service, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(
                f"{service.name} exited with {service.process.returncode}:\n{service.log()[-4000:]}"
            )
        if ready():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{service.name} not ready after {timeout} s:\n{service.log()[-4000:]}")


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


def http_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
