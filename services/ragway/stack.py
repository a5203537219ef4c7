"""`ragway up`: the whole stack as three child processes on the embedded defaults.

Model, retrieval and gateway start together (the model's engine takes longest). A child that
exits is restarted with backoff, one console line per restart (a model service exits by itself when
its engine dies); one that keeps crashing stops the stack with its last log lines. Each child's full
output goes to `<data dir>/logs/<service>.log`; the console shows what a person starting the stack
needs: ragway's own progress lines per service (a line or two each: listening, dtype, engine
ready), any warning or error, and the ready banner with the URL and admin key. `--verbose` streams
every line as well. Ctrl-C or SIGTERM stops the gateway first (it drains streams), then the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.markup import escape

from ragway.gateway.app import ADMIN_KEY_FILE, admin_key
from ragway.gateway.catalog.model_table import ModelTable
from ragway.gateway.core.config import GatewaySettings
from ragway.model.config import ModelSettings
from ragway.model.liveness import ENGINE_FAILED_EXIT
from ragway.retrieval.config import RetrievalSettings

console = Console(highlight=False)
COLOURS = {"model": "magenta", "retrieval": "cyan", "gateway": "green"}
READY_TIMEOUT = 900.0
LOG_DIR = "logs"
TAIL_LINES = 15
# Seconds before the 1st, 2nd, ... restart of a child in a row; one more crash stops the stack.
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STABLE_SECONDS = 120.0  # a child that ran this long has recovered: its next crash starts over
USAGE_EXIT = 2  # a bad setting or option (ragway.cli, typer): a restart would fail the same way


@dataclass
class Child:
    """One supervised service: its command, and the process now running it (None while it
    waits for a restart)."""

    name: str  # on the console and in the log file's name
    command: str  # the ragway subcommand: model, retrieval or gateway
    env: dict[str, str]
    log_path: Path
    verbose: bool
    process: subprocess.Popen[bytes] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    started_at: float = 0.0
    restarts: int = 0  # restarts in a row, without a run of STABLE_SECONDS between them
    restart_at: float | None = None  # when a crashed child starts again


def summary(line: str) -> str | None:
    """The console's version of one log line, or None to leave it to the log file.

    ragway's services log JSON: their own INFO lines are progress and stay; every library's
    WARNING and above stays. Everything else (vLLM's start-up chatter, access logs) is in the file.
    Plain text from a library is shown only when it looks like an error."""
    try:
        entry = json.loads(line)
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or "msg" not in entry:
        return line if ("Error" in line or "error:" in line or line.startswith("ragway:")) else None
    level, logger = str(entry.get("level", "")), str(entry.get("logger", ""))
    if level in ("warning", "error", "critical") or (logger.startswith("ragway") and level == "info"):
        return f"{level}: {entry['msg']}" if level != "info" else str(entry["msg"])
    return None


def _pump(child: Child, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    assert process.stdout is not None
    colour = COLOURS[child.command]
    with log:
        for raw in process.stdout:
            log.write(raw)
            log.flush()
            line = raw.decode(errors="replace").rstrip()
            child.tail.append(line)
            shown = line if child.verbose else summary(line)
            if shown is not None:
                console.print(f"[{colour}]{child.name:>9} |[/] {escape(shown)}", soft_wrap=True)


def _spawn(child: Child) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ragway.cli", child.command],
        env=child.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
    )
    # A restart appends: the log keeps the lines of the run that crashed.
    log = child.log_path.open("ab" if child.process is not None else "wb")
    threading.Thread(target=_pump, args=(child, process, log), daemon=True).start()
    child.process, child.started_at, child.restart_at = process, time.monotonic(), None


@dataclass(frozen=True)
class LocalModel:
    """A model service `ragway up` runs: one replica of the model table on this machine."""

    child: str  # "model" when it is the only one
    served_name: str  # "" = the name the model service derives from its weights
    address: str


LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}


def local_models(table: ModelTable) -> list[LocalModel]:
    """Every replica of the model table on this machine, each a model service `ragway up` starts
    on that port, serving the model's name with the RAGWAY_MODEL_* settings of the environment
    (the same weights: the bundled model by default). Replicas elsewhere are the gateway's to reach."""
    found = []
    for entry in table.models:
        local = [a for a in entry.replicas if a.rpartition(":")[0] in LOCAL_HOSTS]
        for i, address in enumerate(local):
            label = "-".join(p for p in (entry.name or "", str(i + 1) if len(local) > 1 else "") if p)
            found.append(LocalModel(f"model-{label}" if label else "model", entry.name or "", address))
    if len(found) == 1:
        found = [LocalModel("model", found[0].served_name, found[0].address)]
    return found


def _model_children(
    models: list[LocalModel], env: dict[str, str], log_dir: Path, verbose: bool
) -> list[Child]:
    base_metrics = ModelSettings().metrics_port
    children = []
    for i, model in enumerate(models):
        model_env = {**env, "RAGWAY_MODEL_PORT": model.address.rpartition(":")[2]}
        if model.served_name:
            model_env["RAGWAY_MODEL_SERVED_NAME"] = model.served_name
        if base_metrics and len(models) > 1:
            model_env["RAGWAY_MODEL_METRICS_PORT"] = str(base_metrics + i)
        children.append(Child(model.child, "model", model_env, log_dir / f"{model.child}.log", verbose))
    return children


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop(children: list[Child], timeout: float = 40.0) -> None:
    started = [c.process for c in children if c.process is not None]
    for process in reversed(started):  # gateway first: it finishes streams while the model still runs
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Each child leads its own process group; vLLM's engine-core and worker processes are in
        # it, and must not outlive the service that spawned them.
        _signal_group(process.pid, signal.SIGTERM)
    time.sleep(2)
    for process in started:
        _signal_group(process.pid, signal.SIGKILL)


def _serving(address: str) -> bool:
    """The model service's gRPC health: the long pole of start-up, polled without touching the
    gateway (each of its /readyz answers would be an access-log line)."""
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def _exit_reason(code: int) -> str:
    if code == ENGINE_FAILED_EXIT:
        return "its engine failed"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _report_giving_up(child: Child) -> None:
    assert child.process is not None
    why = (
        "exited on a bad setting"
        if child.process.returncode == USAGE_EXIT
        else f"keeps crashing ({child.restarts} restarts in a row)"
    )
    console.print(f"[red]{child.name} {why}; stopping the stack[/]")
    time.sleep(0.2)  # let the pump thread take the last lines
    lines = list(child.tail)
    if len(lines) > 1:
        console.print(f"last lines of {child.log_path}:", soft_wrap=True)
    for line in lines:
        console.print(f"  {escape(line)}", soft_wrap=True)


def supervise(children: list[Child], now: float, spawn: Callable[[Child], None] = _spawn) -> Child | None:
    """One round of supervision: schedule a restart, with backoff, for each child that exited and
    start those whose time has come; returns a child that keeps crashing or exited on a bad
    setting (the stack must stop).

    A crash after a run of STABLE_SECONDS starts the backoff over, as Kubernetes' does."""
    for child in children:
        if child.restart_at is not None:
            if now >= child.restart_at:
                spawn(child)
            continue
        assert child.process is not None
        code = child.process.poll()
        if code is None:
            continue
        # What the crashed service started (vLLM's EngineCore) must not outlive it and hold the
        # cores and memory its successor needs.
        _signal_group(child.process.pid, signal.SIGKILL)
        if now - child.started_at >= STABLE_SECONDS:
            child.restarts = 0
        if code == USAGE_EXIT or child.restarts >= len(RESTART_BACKOFF):
            return child
        delay = RESTART_BACKOFF[child.restarts]
        child.restarts += 1
        child.restart_at = now + delay
        console.print(
            f"[yellow]{child.name} exited ({_exit_reason(code)}); restarting it in {delay:.0f} s "
            f"(restart {child.restarts} in a row)[/]"
        )
    return None


def up(data_dir: Path, verbose: bool = False) -> int:
    """Run the stack until interrupted; return the exit code."""
    data_dir = data_dir.resolve()
    log_dir = data_dir / LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RAGWAY_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    key = admin_key(GatewaySettings(data_dir=data_dir))  # generated once and kept in the data folder
    env.setdefault("RAGWAY_ADMIN_KEY", key)
    # The gateway finds the others wherever their own settings (or the models file) put them.
    model_addr = env.setdefault("RAGWAY_MODEL_SERVICE_ADDR", f"127.0.0.1:{ModelSettings().port}")
    env.setdefault("RAGWAY_RETRIEVAL_SERVICE_ADDR", f"127.0.0.1:{RetrievalSettings().port}")
    settings = GatewaySettings(data_dir=data_dir, model_service_addr=model_addr)
    models = local_models(settings.model_table())
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    names = ", ".join(m.child for m in models)
    console.print(f"starting {names}, retrieval and gateway; full logs in {log_dir}/")
    children = [
        *_model_children(models, env, log_dir, verbose),
        *(Child(name, name, env, log_dir / f"{name}.log", verbose) for name in ("retrieval", "gateway")),
    ]
    for child in children:
        _spawn(child)
    url = f"http://{settings.host}:{settings.port}"
    started, announced, models_ready = time.monotonic(), False, False
    try:
        while not stopping.wait(1.0):
            crashing = supervise(children, time.monotonic())
            if crashing is not None:
                _report_giving_up(crashing)
                return 1
            if announced:
                continue
            models_ready = models_ready or all(_serving(m.address) for m in models)
            if models_ready:
                try:
                    ready = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready:
                    announced = True
                    console.print(
                        f"\n[bold green]ragway is ready[/] at [bold]{url}[/] in "
                        f"{time.monotonic() - started:.0f} s  (chat UI: {url}/)\n"
                        f"admin key: [bold]{key}[/]  (kept in {data_dir / ADMIN_KEY_FILE})\n"
                        f"logs: {log_dir}/  ·  Ctrl-C stops the stack.\n"
                    )
            if not announced and time.monotonic() - started > READY_TIMEOUT:
                console.print(f"[red]the stack did not become ready in time; see {log_dir}/[/]")
                return 1
        return 0
    finally:
        console.print("stopping…")
        _stop(children)
