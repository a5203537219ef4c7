"""RAGWAY_WORKERS: one gateway, several worker processes accepting on one port — what lets a pod
relay more tokens than one Python process can (bench/relay_bench.py). Real processes, real
SQLite and Redis; no model is needed to prove the process model."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from tests.utils.factories import make_account
from tests.utils.processes import RAGWAY, free_port, start_gateway_process

REDIS_URL = "redis://127.0.0.1:6379/0"


def workers_of(pid: int) -> list[psutil.Process]:
    """The gateway's worker processes (multiprocessing's own helper process is not one)."""
    return [
        child
        for child in psutil.Process(pid).children()
        if "resource_tracker" not in " ".join(child.cmdline())
    ]


def test_two_workers_share_one_port_and_the_pod_serves_while_one_of_them_dies(tmp_path: Path) -> None:
    gateway = start_gateway_process(
        "gateway-workers",
        tmp_path,
        f"127.0.0.1:{free_port()}",
        f"127.0.0.1:{free_port()}",
        env={"RAGWAY_WORKERS": "2", "RAGWAY_REDIS_URL": REDIS_URL},
    )
    try:
        workers = workers_of(gateway.service.process.pid)
        assert len(workers) == 2
        # Both workers answer with the one bootstrap the parent made: the same admin, the same users.
        account = make_account(gateway.url, gateway.admin_key)
        with httpx.Client(base_url=gateway.url, headers=account.headers, timeout=10) as http:
            assert all(http.get("/v1/me").status_code == 200 for _ in range(10))
        workers[0].kill()
        deadline = time.monotonic() + 20
        answered = 0
        while answered < 20 and time.monotonic() < deadline:
            try:
                # A new connection each time: the kernel hands it to a worker still accepting.
                answered += httpx.get(f"{gateway.url}/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                pass
        assert answered == 20
        assert gateway.service.stop(signal.SIGTERM) == 0  # the parent drains the rest and exits clean
        assert not workers[1].is_running() or workers[1].status() == psutil.STATUS_ZOMBIE
    finally:
        gateway.service.stop()


def test_several_workers_without_redis_refuse_to_start(tmp_path: Path) -> None:
    env = {"RAGWAY_WORKERS": "2", "RAGWAY_DATA_DIR": str(tmp_path), "RAGWAY_PORT": str(free_port())}
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RAGWAY_")}
    result = subprocess.run([RAGWAY, "gateway"], env={**inherited, **env}, capture_output=True, timeout=60)
    assert result.returncode != 0
    assert b"RAGWAY_WORKERS=2 needs RAGWAY_REDIS_URL" in result.stderr
