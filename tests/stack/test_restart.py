"""`ragway up` heals an engine death without a human: the EngineCore of its model service is killed,
the model service turns NOT_SERVING within 1 s and exits, `ragway up` says it restarts it (one line)
and the stack serves chat again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import MODEL_NAME
from tests.stack.test_up import start_stack, stop, wait_ready
from tests.utils.engine_death import engine_core, health_changes, not_serving_at
from tests.utils.factories import make_account
from tests.utils.processes import LOG_DIR, free_port

# `ragway up` starts a vLLM engine of its own, twice here; killing it is the fault tier's
pytestmark = [pytest.mark.engine, pytest.mark.faults]

RESTART_LINE = "model exited (its engine failed); restarting it in 1 s (restart 1 in a row)"


def model_service(up_pid: int) -> psutil.Process:
    """The `ragway.cli model` child of `ragway up`."""
    for child in psutil.Process(up_pid).children():
        if child.cmdline()[-1] == "model":
            return child
    raise AssertionError("ragway up runs no model service")


def wait_for_line(path: Path, line: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while line not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{line!r} never appeared in {path}"
        time.sleep(0.5)


async def kill_engine(model_address: str, model_pid: int) -> float:
    """SIGKILL the EngineCore; seconds until the model service said NOT_SERVING."""
    changes = health_changes(model_address)
    await anext(changes)  # SERVING, before the kill
    core = engine_core(model_pid)
    killed = time.monotonic()
    core.kill()
    said = await asyncio.wait_for(not_serving_at(changes), 10)
    await changes.aclose()
    assert said is not None, "the model service went away without saying NOT_SERVING"
    return said - killed


async def test_up_restarts_a_model_service_whose_engine_died(tmp_path: Path) -> None:
    ports = {
        name: free_port() for name in ("gateway", "model", "model_metrics", "retrieval", "retrieval_metrics")
    }
    url = f"http://127.0.0.1:{ports['gateway']}"
    log = LOG_DIR / "stack-restart.log"
    up = start_stack(tmp_path / "stack", ports, log.name, {"RAGWAY_MODEL_ENFORCE_EAGER": "true"})
    try:
        await asyncio.to_thread(wait_ready, up, url)
        first = model_service(up.pid)
        after = await kill_engine(f"127.0.0.1:{ports['model']}", first.pid)
        assert after < 1.0, f"NOT_SERVING {after:.2f} s after the engine died"
        await asyncio.to_thread(first.wait, 60)
        # The line names the exit code ragway up read: 3, ENGINE_FAILED_EXIT, is "its engine failed".
        await asyncio.to_thread(wait_for_line, log, RESTART_LINE, 30)
        assert log.read_text().count("restarting it") == 1, "one line per restart"
        await asyncio.to_thread(wait_ready, up, url)
        assert model_service(up.pid).pid != first.pid
        account = make_account(url, (tmp_path / "stack" / "admin.key").read_text().strip())
        reply = await account.async_openai().chat.completions.create(
            model=MODEL_NAME,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
        )
        assert "Paris" in (reply.choices[0].message.content or "")
        assert up.poll() is None, "ragway up kept running throughout"
    finally:
        stop(up)
