"""Engine death heals: an engine that dies (its EngineCore process killed) or stalls (the EngineCore
stopped, so no step ever returns) inside a live model service turns the service NOT_SERVING at
once, ends the in-flight streams with UNAVAILABLE, and the service exits non-zero (3) so that its
supervisor restarts it. Real model services with the real vLLM engine; each test gets its own,
since it ruins it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2

from ragway.v1 import model_pb2_grpc
from tests.conftest import ENGINE_READY_TIMEOUT
from tests.model.helpers import chat_request
from tests.reliability.conftest import Figures
from tests.utils.engine_death import engine_core, health_changes, not_serving_at
from tests.utils.processes import Service, free_port, grpc_serving, start, wait_until

pytestmark = [pytest.mark.engine, pytest.mark.faults]

ENGINE_FAILED_EXIT = 3  # ragway.model.server.ENGINE_FAILED_EXIT, what `ragway up` restarts on
STREAMS = 4
STEP_TIMEOUT = 4.0


def start_model(name: str, extra: dict[str, str] | None = None) -> tuple[Service, str]:
    port = free_port()
    service = start(
        name,
        "model",
        {
            "RAGWAY_MODEL_PORT": str(port),
            "RAGWAY_MODEL_METRICS_PORT": "0",
            "RAGWAY_MODEL_KV_CACHE_GIB": "1",
            "RAGWAY_MODEL_ENFORCE_EAGER": "true",  # started once per test: eager starts fastest
            **(extra or {}),
        },
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_until(service, lambda: grpc_serving(address), ENGINE_READY_TIMEOUT)
    except BaseException:
        service.stop()
        raise
    return service, address


@pytest.fixture
def doomed_model() -> Iterator[tuple[Service, str]]:
    service, address = start_model("doomed-model")
    yield service, address
    service.stop(signal.SIGKILL)


@pytest.fixture
def stalling_model() -> Iterator[tuple[Service, str]]:
    service, address = start_model("stalling-model", {"RAGWAY_MODEL_STEP_TIMEOUT_SECONDS": str(STEP_TIMEOUT)})
    yield service, address
    try:
        os.kill(engine_core(service.process.pid).pid, signal.SIGCONT)
    except (AssertionError, psutil.NoSuchProcess, ProcessLookupError):
        pass
    service.stop(signal.SIGKILL)


async def stream_until_failure(
    stub: model_pb2_grpc.ModelServiceStub, started: asyncio.Event
) -> grpc.StatusCode:
    """Stream a long answer; set `started` at its first token; return the status it ends with."""
    request = chat_request("Tell me a very long story about the sea.", max_tokens=3000, ignore_eos=True)
    try:
        async for message in stub.Generate(request):
            if any(c.token_ids or c.text for c in message.choices):
                started.set()
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def break_engine_under_streams(
    address: str, break_engine: object, grace: float
) -> tuple[list[grpc.StatusCode], float, float]:
    """Start STREAMS streams, break the engine once each streams, and return the streams' final
    statuses, when the break happened and when health said NOT_SERVING."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        events = [asyncio.Event() for _ in range(STREAMS)]
        streams = [asyncio.create_task(stream_until_failure(stub, e)) for e in events]
        changes = health_changes(address)
        first = await anext(changes)
        assert first[1] == health_pb2.HealthCheckResponse.SERVING
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 120)
        broke_at = time.monotonic()
        break_engine()  # type: ignore[operator]
        said = await asyncio.wait_for(not_serving_at(changes), grace + 5)
        await changes.aclose()
        assert said is not None, "health never said NOT_SERVING"
        codes = await asyncio.wait_for(asyncio.gather(*streams), grace + 30)
    return list(codes), broke_at, said


async def test_killed_engine_core_turns_not_serving_fails_streams_and_exits(
    doomed_model: tuple[Service, str], figures: Figures
) -> None:
    service, address = doomed_model
    core = engine_core(service.process.pid)
    codes, killed_at, not_serving_at = await break_engine_under_streams(address, core.kill, grace=1.0)
    assert not_serving_at - killed_at < 1.0, "NOT_SERVING within 1 s of the engine's death"
    assert codes == [grpc.StatusCode.UNAVAILABLE] * STREAMS, "every in-flight stream ends UNAVAILABLE"
    assert service.process.wait(60) == ENGINE_FAILED_EXIT, "the service exits for its supervisor"
    assert "the engine can no longer serve" in service.log()
    figures.add(
        "engine death",
        f"EngineCore SIGKILL -> NOT_SERVING in {1000 * (not_serving_at - killed_at):.0f} ms "
        f"({STREAMS} streams failed UNAVAILABLE)",
    )


async def test_stalled_engine_turns_not_serving_after_the_step_timeout_and_exits(
    stalling_model: tuple[Service, str], figures: Figures
) -> None:
    service, address = stalling_model
    core = engine_core(service.process.pid)
    codes, stopped_at, not_serving_at = await break_engine_under_streams(
        address, lambda: os.kill(core.pid, signal.SIGSTOP), grace=STEP_TIMEOUT + 1
    )
    stalled_for = not_serving_at - stopped_at
    assert STEP_TIMEOUT <= stalled_for < STEP_TIMEOUT + 1.0, "NOT_SERVING once the step timeout passes"
    assert codes == [grpc.StatusCode.UNAVAILABLE] * STREAMS, "a stalled engine's streams end UNAVAILABLE"
    assert service.process.wait(60) == ENGINE_FAILED_EXIT
    assert "no engine step finished" in service.log()
    assert not core.is_running() or core.status() == psutil.STATUS_ZOMBIE, "the stalled EngineCore is ended"
    figures.add(
        "engine death",
        f"EngineCore SIGSTOP -> NOT_SERVING after {stalled_for:.1f} s (timeout {STEP_TIMEOUT} s)",
    )
