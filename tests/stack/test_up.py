"""`ragway up` (what `make run` calls): the whole stack from one command, stopped by SIGTERM,
restarted on the same data folder with everything still there."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import MODEL_NAME
from tests.utils.factories import make_account
from tests.utils.processes import LOG_DIR, RAGWAY, free_port

pytestmark = pytest.mark.engine  # `ragway up` starts a vLLM engine of its own


def start_stack(
    data_dir: Path, ports: dict[str, int], log_name: str, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RAGWAY_DATA_DIR": str(data_dir),
        "RAGWAY_PORT": str(ports["gateway"]),
        "RAGWAY_MODEL_PORT": str(ports["model"]),
        "RAGWAY_MODEL_METRICS_PORT": str(ports["model_metrics"]),
        "RAGWAY_RETRIEVAL_PORT": str(ports["retrieval"]),
        "RAGWAY_RETRIEVAL_METRICS_PORT": str(ports["retrieval_metrics"]),
        "RAGWAY_MODEL_KV_CACHE_GIB": "1",
        **(extra or {}),
    }
    env.pop("RAGWAY_ADMIN_KEY", None)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = (LOG_DIR / log_name).open("wb")
    return subprocess.Popen([RAGWAY, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "ragway up exited early"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail("the stack did not become ready")


def stop(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    assert process.wait(120) == 0
    return children


def test_up_serves_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    ports = {
        name: free_port() for name in ("gateway", "model", "model_metrics", "retrieval", "retrieval_metrics")
    }
    url = f"http://127.0.0.1:{ports['gateway']}"
    first = start_stack(data_dir, ports, "stack-first.log")
    try:
        wait_ready(first, url)
        admin_key = (data_dir / "admin.key").read_text().strip()
        # `ragway up` announces the URL and the key once it has seen the stack ready itself.
        deadline = time.monotonic() + 30
        while admin_key not in (LOG_DIR / "stack-first.log").read_text():
            assert time.monotonic() < deadline, "the admin key is printed"
            time.sleep(0.5)
        account = make_account(url, admin_key)
        reply = account.openai().chat.completions.create(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            store=True,
        )
        assert "Paris" in reply.choices[0].message.content
        with account.http() as http:
            assert http.post("/v1/collections", json={"name": "kept"}).status_code == 201
            docs = {"documents": [{"id": "d1", "text": "The vault door is painted teal."}]}
            assert http.post("/v1/collections/kept/documents", json=docs).status_code == 200
    finally:
        children = stop(first)
    assert children
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not [c for c in alive if c.status() != psutil.STATUS_ZOMBIE], "a child outlived ragway up"
    assert {"ragway.db", "admin.key", "qdrant"} <= {p.name for p in data_dir.iterdir()}

    second = start_stack(data_dir, ports, "stack-second.log")
    try:
        wait_ready(second, url)
        with account.http() as http:
            assert http.get("/v1/me").status_code == 200, "users and keys survive a restart"
            conversations = http.get("/v1/conversations").json()["data"]
            assert [c["id"] for c in conversations] == [reply.model_extra["conversation_id"]]  # type: ignore[index]
            hits = http.post(
                "/v1/collections/kept/search", json={"query": "what colour is the vault door"}
            ).json()
            assert hits["data"][0]["document_id"] == "d1"
    finally:
        stop(second)
