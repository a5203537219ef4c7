"""`ragway up`: the whole stack as three child processes on the embedded defaults.

Model, retrieval and gateway start together (the model's engine takes longest), each child's
output is streamed with a coloured prefix, and the URL and admin key are printed once the
gateway is ready. Ctrl-C or SIGTERM stops the gateway first (it drains streams), then the rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from ragway.gateway.app import ADMIN_KEY_FILE, admin_key
from ragway.gateway.config import GatewaySettings
from ragway.model.config import ModelSettings
from ragway.retrieval.config import RetrievalSettings

console = Console(highlight=False)
COLOURS = {"model": "magenta", "retrieval": "cyan", "gateway": "green"}
READY_TIMEOUT = 900.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def _pump(child: Child) -> None:
    assert child.process.stdout is not None
    for raw in child.process.stdout:
        line = raw.decode(errors="replace").rstrip()
        console.print(f"[{COLOURS[child.name]}]{child.name:>9} |[/] {line}", markup=True, soft_wrap=True)


def _start(name: str, env: dict[str, str]) -> Child:
    process = subprocess.Popen(
        [sys.executable, "-m", "ragway.cli", name],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
    )
    child = Child(name, process)
    threading.Thread(target=_pump, args=(child,), daemon=True).start()
    return child


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop(children: list[Child], timeout: float = 40.0) -> None:
    for child in reversed(children):  # gateway first: it finishes streams while the model still runs
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(timeout)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        # Each child leads its own process group; vLLM's engine-core and worker processes are in
        # it, and must not outlive the service that spawned them.
        _signal_group(child.process.pid, signal.SIGTERM)
    time.sleep(2)
    for child in children:
        _signal_group(child.process.pid, signal.SIGKILL)


def up(data_dir: Path) -> int:
    """Run the stack until interrupted; return the exit code."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RAGWAY_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    settings = GatewaySettings(data_dir=data_dir)
    key = admin_key(settings)  # generated once and kept in the data folder
    env.setdefault("RAGWAY_ADMIN_KEY", key)
    # The gateway finds the other two wherever their own settings put them.
    env.setdefault("RAGWAY_MODEL_SERVICE_ADDR", f"127.0.0.1:{ModelSettings().port}")
    env.setdefault("RAGWAY_RETRIEVAL_SERVICE_ADDR", f"127.0.0.1:{RetrievalSettings().port}")
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    children = [_start(name, env) for name in ("model", "retrieval", "gateway")]
    url = f"http://{settings.host}:{settings.port}"
    started, announced = time.monotonic(), False
    try:
        while not stopping.wait(1.0):
            dead = [c for c in children if c.process.poll() is not None]
            if dead:
                console.print(
                    f"[red]{dead[0].name} exited with {dead[0].process.returncode}; stopping the stack[/]"
                )
                return 1
            if not announced:
                try:
                    ready = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready:
                    announced = True
                    console.print(
                        f"\n[bold green]ragway is ready[/] at [bold]{url}[/]  (chat UI: {url}/)\n"
                        f"admin key: [bold]{key}[/]  (kept in {data_dir / ADMIN_KEY_FILE})\n"
                        "Ctrl-C stops the stack.\n"
                    )
                elif time.monotonic() - started > READY_TIMEOUT:
                    console.print("[red]the stack did not become ready in time[/]")
                    return 1
        return 0
    finally:
        console.print("stopping…")
        _stop(children)
