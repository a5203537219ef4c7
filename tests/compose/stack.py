"""The compose stack under test: docker-compose.yml (+ docker-compose.offline.yml where the images
were built from Debian packages) as one compose project with its own secrets, driven through
Debian's docker-compose and the docker CLI. Only 127.0.0.1 (the proxy's published port) and the
containers are ever addressed."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
OFFLINE_IMAGE = "ragway/offline-postgres:latest"
# Small model replicas: two engines share 2 cores in this test (the ask), so no dtype probe
# (float32 is what the probe picks on these CPUs), no torch.compile, a 1 GiB KV cache each.
MODEL_SETTINGS = {
    "RAGWAY_MODEL_DTYPE": "float32",
    "RAGWAY_MODEL_ENFORCE_EAGER": "true",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "RAGWAY_MODEL_MAX_MODEL_LEN": "2048",
    # Both replicas on the same 2 cores: vLLM's `auto` would pin both to core 0.
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
}


# Short request deadlines, so the reservations a killed gateway leaves are settled by the other
# within the test (after RAGWAY_ORPHAN_RESERVATION_SECONDS, swept every minute).
GATEWAY_SETTINGS = {
    "RAGWAY_MODEL_TIMEOUT_SECONDS": "150",
    "RAGWAY_ORPHAN_RESERVATION_SECONDS": "240",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} -> {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return done.stdout


def offline() -> bool:
    """Whether this machine uses the stand-in images (no registry: `make images` built them)."""
    wanted = os.environ.get("RAGWAY_COMPOSE_OFFLINE", "auto")
    if wanted != "auto":
        return wanted == "1"
    return subprocess.run(["docker", "image", "inspect", OFFLINE_IMAGE], capture_output=True).returncode == 0


@dataclass
class Stack:
    project: str
    port: int
    admin_key: str
    env: dict[str, str]
    files: list[str] = field(default_factory=list)

    @classmethod
    def new(cls) -> Stack:
        for tool in ("docker", "docker-compose"):
            assert shutil.which(tool), f"{tool} is not installed: run `make images` (docker/base/build.sh)"
        port = free_port()
        admin_key = "rgw_" + secrets.token_urlsafe(32)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RAGWAY_", "POSTGRES_", "REDIS_"))},
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "REDIS_PASSWORD": secrets.token_hex(16),
            "QDRANT_API_KEY": secrets.token_hex(16),
            "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
            "RAGWAY_ADMIN_KEY": admin_key,
            "RAGWAY_GATEWAY_PORT": str(port),
            **MODEL_SETTINGS,
            **GATEWAY_SETTINGS,
        }
        files = ["-f", "docker-compose.yml"] + (["-f", "docker-compose.offline.yml"] if offline() else [])
        return cls(f"ragway-compose-test-{os.getpid()}", port, admin_key, env, files)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str, timeout: float = 900, **env: str) -> str:
        return run(["docker-compose", "-p", self.project, *self.files, *args], {**self.env, **env}, timeout)

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).strip()

    def docker(self, *args: str, timeout: float = 120) -> str:
        return run(["docker", *args], timeout=timeout)

    def health(self, service: str) -> str:
        return self.docker("inspect", "-f", "{{.State.Health.Status}}", self.container(service)).strip()

    def started_at(self, service: str) -> str:
        return self.docker("inspect", "-f", "{{.State.StartedAt}}", self.container(service)).strip()

    def wait_healthy(self, services: list[str], timeout: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            states = {s: self.health(s) for s in services}
            if all(v == "healthy" for v in states.values()):
                return time.monotonic() - start
            time.sleep(2)
        raise AssertionError(f"not healthy within {timeout} s: {states}\n{self.logs(*services)}")

    def wait_ready(self, timeout: float) -> float:
        start = time.monotonic()
        last = ""
        while time.monotonic() - start < timeout:
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=5)
                if response.status_code == 200:
                    return time.monotonic() - start
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(1)
        raise AssertionError(f"/readyz through the proxy not ready within {timeout} s: {last}")

    def sql(self, query: str) -> list[list[str]]:
        out = self.docker(
            "exec",
            self.container("postgres"),
            "psql",
            "-U",
            "ragway",
            "-d",
            "ragway",
            "-tA",
            "-F",
            "\t",
            "-c",
            query,
        )
        return [line.split("\t") for line in out.splitlines() if line]

    def network(self) -> str:
        return f"{self.project}_ragway"

    def logs(self, *services: str) -> str:
        try:
            return self.compose("logs", "--no-color", "--tail", "40", *services, timeout=60)
        except Exception as exc:  # the report of a failure must not hide it
            return f"(no logs: {exc})"

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": self.docker("ps", "-aq", "--filter", label).split(),
            "networks": self.docker("network", "ls", "-q", "--filter", label).split(),
            "volumes": self.docker("volume", "ls", "-q", "--filter", label).split(),
        }
