"""Running ragway for a benchmark: its services as real processes, accounts on a gateway, a
database of its own, and cleanup when the run ends or is killed.

Processes are started, awaited and stopped by the repository's one process harness,
`tests/utils/processes.py`; this module adds what benchmarks start and how.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# Benchmarks run as `python bench/<name>.py`: bench/ is on sys.path, the repository root (where
# tests/ lives) is not. It goes right after bench/, ahead of site-packages.
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from tests.utils.processes import (  # noqa: E402
    Service,
    free_port,
    grpc_serving,
    http_ready,
    start,
    start_gateway_process,
    wait_until,
)

BIN = Path(sys.executable).parent
MODEL_DIR = Path("~/.cache/ragway/SmolLM2-135M-Instruct").expanduser()
MODEL_NAME = "SmolLM2-135M-Instruct"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
ENGINE_READY_TIMEOUT = 600.0  # a cold torch.compile on 2 cores takes minutes; later starts hit the cache
LOG_DIR = Path(tempfile.gettempdir()) / "ragway-bench-logs"

_STARTED: list[Service] = []


def _stop_all() -> None:
    for service in reversed(_STARTED):
        service.stop(timeout=20)


def install_cleanup() -> None:
    """Stop every service this run started, also when the run is killed with SIGTERM (e.g. by
    `timeout`): otherwise a model service and its EngineCore outlive the benchmark."""
    atexit.register(_stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cpu-bind",
        default=None,
        help="VLLM_CPU_OMP_THREADS_BIND for every engine of the run (e.g. '1'); default: vLLM's auto, "
        "which pins to core 0 -- the same core as any other engine already running on the machine",
    )


def apply_engine_options(args: argparse.Namespace) -> None:
    if args.cpu_bind:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = args.cpu_bind  # inherited by every service we spawn


# -- services -------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """A started service and where to reach it."""

    service: Service
    address: str  # host:port for gRPC services, base URL for HTTP ones
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        self.service.stop()


def spawn(name: str, command: str | list[str], env: dict[str, str]) -> Service:
    """Start a service whose log is named after this run, and stop it when the run ends."""
    service = start(name, command, env, log_path=LOG_DIR / f"{name}-{os.getpid()}.log")
    _STARTED.append(service)
    return service


def start_model_service(
    max_num_seqs: int = 64, kv_cache_gib: int = 2, env: dict[str, str] | None = None, name: str = "model"
) -> Endpoint:
    """`ragway model` on free ports, ready once gRPC health says SERVING."""
    port = free_port()
    service = spawn(
        name,
        "model",
        {
            "RAGWAY_MODEL_PORT": str(port),
            "RAGWAY_MODEL_METRICS_PORT": str(free_port()),
            "RAGWAY_MODEL_MAX_NUM_SEQS": str(max_num_seqs),
            "RAGWAY_MODEL_KV_CACHE_GIB": str(kv_cache_gib),
            "RAGWAY_MODEL_DRAIN_SECONDS": "5",
            **(env or {}),
        },
    )
    address = f"127.0.0.1:{port}"
    wait_until(service, lambda: grpc_serving(address), ENGINE_READY_TIMEOUT)
    return Endpoint(service, address)


def service_dtype() -> str:
    """The dtype our model service runs (dtype=auto: the probe's cached choice), so that vLLM's
    own server is measured on the same kernels."""
    from ragway.model.config import ModelSettings
    from ragway.model.dtype import choose_dtype, device

    settings = ModelSettings()
    return choose_dtype(settings.dtype, device(), MODEL_DIR, settings.cache, settings.enforce_eager).dtype


def start_vllm_openai_server(max_num_seqs: int = 64, kv_cache_gib: int = 2) -> Endpoint:
    """vLLM's own OpenAI server with the engine arguments our model service uses."""
    port = free_port()
    argv = [
        str(BIN / "python"),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(MODEL_DIR),
        "--served-model-name",
        MODEL_NAME,
        "--dtype",
        service_dtype(),
        "--max-model-len",
        "4096",
        "--max-num-seqs",
        str(max_num_seqs),
        "--enable-prefix-caching",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-uvicorn-access-log",
    ]
    service = spawn("vllm-openai", argv, {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)})
    url = f"http://127.0.0.1:{port}"
    wait_until(service, lambda: http_ready(f"{url}/health"), ENGINE_READY_TIMEOUT)
    return Endpoint(service, url)


def start_retrieval_service(data_dir: Path) -> Endpoint:
    port = free_port()
    service = spawn(
        "retrieval",
        "retrieval",
        {
            "RAGWAY_DATA_DIR": str(data_dir),
            "RAGWAY_RETRIEVAL_PORT": str(port),
            "RAGWAY_RETRIEVAL_METRICS_PORT": str(free_port()),
        },
    )
    address = f"127.0.0.1:{port}"
    wait_until(service, lambda: grpc_serving(address), 300)
    return Endpoint(service, address)


def start_gateway(
    name: str,
    data_dir: Path,
    model_addr: str,
    retrieval_addr: str,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Endpoint:
    """One gateway worker (uvicorn, one process); `extra["admin_key"]` is its admin key."""
    gw = start_gateway_process(
        name,
        data_dir,
        model_addr,
        retrieval_addr,
        database_url=database_url,
        # A busy 2-core machine can take minutes per request at concurrency 32; the default 300 s
        # deadline would turn a slow run into failed requests.
        env={"RAGWAY_MODEL_TIMEOUT_SECONDS": "3600", **(env or {})},
        drain_seconds=5,
        log_path=LOG_DIR / f"{name}-{os.getpid()}.log",
    )
    _STARTED.append(gw.service)
    return Endpoint(gw.service, gw.url, {"admin_key": gw.admin_key})


# -- accounts and databases -----------------------------------------------------------------------


def fresh_postgres_database(name: str) -> str:
    """Drop and create database `name` on the shared server; its SQLAlchemy URL for the gateway.

    A database of our own, so the benchmark never resets the schema other people test against.
    """
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_api_key(base_url: str, admin_key: str, credits: float = 1_000_000.0) -> str:
    """A new user with plenty of credits and no rate limits; returns its API key."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base_url, headers=admin, timeout=30) as http:
        user = http.post(
            "/v1/admin/users", json={"name": f"bench-{uuid.uuid4().hex[:10]}", "credits": credits}
        )
        user.raise_for_status()
        key = http.post("/v1/admin/keys", json={"user_id": user.json()["id"]})
        key.raise_for_status()
    return str(key.json()["key"])
