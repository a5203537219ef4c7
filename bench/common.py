"""Shared pieces of the benchmarks: starting ragway services as real processes, accounts on a
gateway, per-request timing records, percentiles, rich tables and JSON output.

Benchmarks import it as `from common import ...` (they run as `python bench/<name>.py`, so this
folder is on sys.path). Every service runs in its own session (process group) so that stopping it
also ends the children it spawned, e.g. vLLM's EngineCore.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAGWAY = str(BIN / "ragway")
MODEL_DIR = Path("~/.cache/ragway/SmolLM2-135M-Instruct").expanduser()
MODEL_NAME = "SmolLM2-135M-Instruct"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
ENGINE_READY_TIMEOUT = 600.0  # a cold torch.compile on 2 cores takes minutes; later starts hit the cache

# Wide enough for the tables when output goes to a file (rich would fold them at 80 columns).
console = Console() if sys.stdout.isatty() else Console(width=160)
_STARTED: list[Proc] = []


def _stop_all() -> None:
    for proc in reversed(_STARTED):
        proc.stop(timeout=20)


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


# -- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A service process started in its own session, and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, then SIGKILL; then make sure nothing of its process group survives."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # children such as vLLM's EngineCore
        except (ProcessLookupError, PermissionError):
            pass


def log_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "ragway-bench-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def spawn(name: str, argv: list[str], env: dict[str, str]) -> Proc:
    log_path = log_dir() / f"{name}-{os.getpid()}.log"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    proc = Proc(name, process, log_path)
    _STARTED.append(proc)
    return proc


def wait_until(proc: Proc, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.log_tail()}")
        if ready():
            return
        time.sleep(0.5)
    proc.stop()
    raise TimeoutError(f"{proc.name} not ready after {timeout:.0f} s:\n{proc.log_tail()}")


def grpc_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Service:
    proc: Proc
    address: str  # host:port for gRPC services, base URL for HTTP ones
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        self.proc.stop()


def start_model_service(max_num_seqs: int = 64, kv_cache_gib: int = 2) -> Service:
    """`ragway model` on free ports, ready once gRPC health says SERVING."""
    port = free_port()
    proc = spawn(
        "model",
        [RAGWAY, "model"],
        {
            "RAGWAY_MODEL_PORT": str(port),
            "RAGWAY_MODEL_METRICS_PORT": str(free_port()),
            "RAGWAY_MODEL_MAX_NUM_SEQS": str(max_num_seqs),
            "RAGWAY_MODEL_KV_CACHE_GIB": str(kv_cache_gib),
            "RAGWAY_MODEL_DRAIN_SECONDS": "5",
        },
    )
    address = f"127.0.0.1:{port}"
    wait_until(proc, lambda: grpc_serving(address), ENGINE_READY_TIMEOUT)
    return Service(proc, address)


def start_vllm_openai_server(max_num_seqs: int = 64, kv_cache_gib: int = 2) -> Service:
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
        "float16",
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
    proc = spawn("vllm-openai", argv, {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)})
    url = f"http://127.0.0.1:{port}"
    wait_until(proc, lambda: http_ok(f"{url}/health"), ENGINE_READY_TIMEOUT)
    return Service(proc, url)


def start_retrieval_service(data_dir: Path) -> Service:
    port = free_port()
    proc = spawn(
        "retrieval",
        [RAGWAY, "retrieval"],
        {
            "RAGWAY_DATA_DIR": str(data_dir),
            "RAGWAY_RETRIEVAL_PORT": str(port),
            "RAGWAY_RETRIEVAL_METRICS_PORT": str(free_port()),
        },
    )
    address = f"127.0.0.1:{port}"
    wait_until(proc, lambda: grpc_serving(address), 300)
    return Service(proc, address)


def start_gateway(
    name: str, data_dir: Path, model_addr: str, retrieval_addr: str, database_url: str | None = None
) -> Service:
    """One gateway worker (uvicorn, one process); `extra["admin_key"]` is its admin key."""
    port = free_port()
    admin_key = "rgw_" + secrets.token_urlsafe(32)
    env = {
        "RAGWAY_PORT": str(port),
        "RAGWAY_DATA_DIR": str(data_dir),
        "RAGWAY_ADMIN_KEY": admin_key,
        "RAGWAY_MODEL_SERVICE_ADDR": model_addr,
        "RAGWAY_RETRIEVAL_SERVICE_ADDR": retrieval_addr,
        "RAGWAY_DRAIN_SECONDS": "5",
        # A busy 2-core machine can take minutes per request at concurrency 32; the default 300 s
        # deadline would turn a slow run into failed requests.
        "RAGWAY_MODEL_TIMEOUT_SECONDS": "3600",
    }
    if database_url:
        env["RAGWAY_DATABASE_URL"] = database_url
    proc = spawn(name, [RAGWAY, "gateway"], env)
    url = f"http://127.0.0.1:{port}"
    wait_until(proc, lambda: http_ok(f"{url}/healthz"), 120)
    return Service(proc, url, {"admin_key": admin_key})


@contextmanager
def running(service_factory: Callable[[], Service]) -> Iterator[Service]:
    service = service_factory()
    try:
        yield service
    finally:
        service.stop()


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


# -- measuring ------------------------------------------------------------------------------------


@dataclass
class RequestTiming:
    """One streamed request: when it started, when its first and last tokens arrived."""

    start: float
    first: float | None = None
    last: float | None = None
    tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    error: str | None = None
    # Seconds the engine itself took from taking the request to its first output, where the
    # bench can see inside (the paired model target): TTFT minus this is what the path adds.
    engine_ttft: float | None = None

    def token(self, now: float, count: int = 1) -> None:
        if count <= 0:
            return
        if self.first is None:
            self.first = now
        self.last = now
        self.tokens += count

    @property
    def ttft(self) -> float:
        assert self.first is not None, "no token arrived"
        return self.first - self.start

    @property
    def itl(self) -> float | None:
        """Mean time per output token after the first (vLLM's TPOT); None for single tokens."""
        if self.first is None or self.last is None or self.tokens < 2:
            return None
        return (self.last - self.first) / (self.tokens - 1)


Sender = Callable[[int], Awaitable[RequestTiming]]  # sends request number k, returns its timing


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class RunSummary:
    target: str
    concurrency: int
    requests: int
    output_tokens: int
    wall_s: float
    tok_per_s: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    itl_p50_ms: float
    mean_output_tokens: float
    mean_prompt_tokens: float
    errors: int
    load1: float  # the machine's 1-minute load average at the end: other work skews figures
    # Set on a run paired request by request with a baseline run (alternating, one machine):
    # the median of the per-pair TTFT differences this - baseline. Far steadier than a
    # difference of two p50s when TTFT varies by more than the overhead being measured.
    paired_ttft_delta_p50_ms: float = float("nan")
    # p50 of TTFT minus the engine's own time to first output (RequestTiming.engine_ttft): the
    # path's cost with the prefill's request-to-request variation taken out.
    ttft_outside_engine_p50_ms: float = float("nan")

    def row(self) -> dict[str, Any]:
        return asdict(self)


def summarize(target: str, concurrency: int, timings: list[RequestTiming], wall: float) -> RunSummary:
    done = [t for t in timings if t.first is not None and t.error is None]
    tokens = sum(t.tokens for t in done)
    itls = [i for t in done if (i := t.itl) is not None]
    return RunSummary(
        target=target,
        concurrency=concurrency,
        requests=len(done),
        output_tokens=tokens,
        wall_s=wall,
        tok_per_s=tokens / wall if wall else float("nan"),
        ttft_p50_ms=pct([t.ttft * 1000 for t in done], 50),
        ttft_p95_ms=pct([t.ttft * 1000 for t in done], 95),
        itl_p50_ms=pct([i * 1000 for i in itls], 50),
        mean_output_tokens=tokens / len(done) if done else float("nan"),
        mean_prompt_tokens=float(np.mean([t.prompt_tokens for t in done])) if done else float("nan"),
        errors=len(timings) - len(done),
        load1=os.getloadavg()[0],
        ttft_outside_engine_p50_ms=pct(
            [(t.ttft - t.engine_ttft) * 1000 for t in done if t.engine_ttft is not None], 50
        ),
    )


async def attempt(one: Sender, index: int) -> RequestTiming:
    """Request `index`; a failure is recorded with its error (summaries count it), not raised."""
    started = time.perf_counter()
    try:
        return await one(index)
    except Exception as exc:
        timing = RequestTiming(started, error=f"{type(exc).__name__}: {exc}"[:500])
        console.print(f"  [red]request failed:[/red] {timing.error}")
        return timing


async def paired_run(baseline: tuple[str, Sender], other: tuple[str, Sender], pairs: int) -> list[RunSummary]:
    """Two senders at concurrency 1, one request each per pair, which goes first alternating, so
    each pair sees the same machine within seconds; sender(k) sends the k-th distinct request
    (k < 2 * pairs). Summaries of both; `other`'s carries its median per-pair TTFT difference."""
    runs: dict[str, list[RequestTiming]] = {baseline[0]: [], other[0]: []}
    for i in range(pairs):
        order = (baseline, other) if i % 2 == 0 else (other, baseline)
        for j, (name, send) in enumerate(order):
            runs[name].append(await attempt(send, 2 * i + j))
    first, second = (
        summarize(name, 1, timings, sum((t.last or t.start) - t.start for t in timings))
        for name, timings in runs.items()
    )
    second.paired_ttft_delta_p50_ms = pct(
        [
            (b.ttft - a.ttft) * 1000
            for a, b in zip(runs[baseline[0]], runs[other[0]], strict=True)
            if a.first is not None and b.first is not None and a.error is None and b.error is None
        ],
        50,
    )
    return [first, second]


async def closed_loop(n_requests: int, concurrency: int, one: Sender) -> tuple[list[RequestTiming], float]:
    """`concurrency` workers send requests 0..n-1 back to back; the timings and the wall time.

    A failed request is recorded (with its error) and the run goes on; summaries count it."""
    queue = list(range(n_requests))
    queue.reverse()
    results: list[RequestTiming] = []

    async def worker() -> None:
        while queue:
            results.append(await attempt(one, queue.pop()))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, n_requests))))
    return results, time.perf_counter() - started


# -- reporting ------------------------------------------------------------------------------------


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    console.print(table)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def summary_table(title: str, summaries: list[RunSummary]) -> None:
    print_table(
        title,
        [
            "target",
            "conc",
            "ok",
            "errors",
            "out tok",
            "tok/s",
            "TTFT p50 ms",
            "TTFT p95 ms",
            "ITL p50 ms",
            "load1",
        ],
        [
            [
                s.target,
                s.concurrency,
                s.requests,
                s.errors,
                s.output_tokens,
                s.tok_per_s,
                s.ttft_p50_ms,
                s.ttft_p95_ms,
                s.itl_p50_ms,
                s.load1,
            ]
            for s in summaries
        ],
    )


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    if value != value:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "meets target" if ok else "misses target"


def save_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
    console.print(f"results written to {path}")


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()}
