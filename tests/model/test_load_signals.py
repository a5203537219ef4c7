"""The signals to route and scale on (GetLoad and the ragway_model_* gauges and counters), one body
run against each engine: the real vLLM engine (its own scheduler stats) and the simulated one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeAlias

import grpc
import pytest

from ragway.model.config import ModelSettings
from ragway.model.server import start_server
from ragway.v1 import model_pb2 as pb
from ragway.v1 import model_pb2_grpc
from tests.conftest import ModelService
from tests.model.helpers import chat_request, collect
from tests.utils.metrics import metric

Stub: TypeAlias = model_pb2_grpc.ModelServiceStub


@pytest.fixture(params=["sim", pytest.param("vllm", marks=pytest.mark.engine)])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Stub, Callable[[str], float | None]]]:
    """A stub of a model service with the given engine, and a reader of its /metrics samples."""
    if request.param == "vllm":
        model_service = request.getfixturevalue("model_service")
        async with grpc.aio.insecure_channel(model_service.address) as channel:
            yield (
                model_pb2_grpc.ModelServiceStub(channel),
                lambda name: metric(model_service.metrics_url, name),
            )
        return
    from prometheus_client import REGISTRY

    running = await start_server(ModelSettings(engine="sim", host="127.0.0.1", sim_itl_ms=5), port=0)
    await asyncio.wait_for(running.engine_ready, 120)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield model_pb2_grpc.ModelServiceStub(channel), REGISTRY.get_sample_value
    await running.stop()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_prefix_cache_counters_count_what_a_repeated_prompt_reused(
    served: tuple[Stub, Callable[[str], float | None]],
) -> None:
    stub, sample = served
    before = await stub.GetLoad(pb.GetLoadRequest())
    # A prompt no earlier test sent (the real engine is shared), long enough for several blocks.
    request = chat_request(
        f"Session {uuid.uuid4().hex}. " + "Summarise the news about rivers. " * 12, max_tokens=2
    )
    _, cold = await collect(stub, request)
    _, warm = await collect(stub, request)
    prompt, reused = warm[-1].usage.prompt_tokens, warm[-1].usage.cached_prompt_tokens
    assert reused >= 64 and cold[-1].usage.cached_prompt_tokens < reused

    async def counted() -> bool:
        after = await stub.GetLoad(pb.GetLoadRequest())
        return (
            after.prefix_cache_queries - before.prefix_cache_queries >= 2 * prompt
            and after.prefix_cache_hits - before.prefix_cache_hits >= reused
        )

    await until(counted)
    assert (sample("ragway_model_prefix_cache_hits_total") or 0) >= reused
    assert (sample("ragway_model_prefix_cache_queries_total") or 0) >= 2 * prompt


async def test_a_running_stream_shows_in_the_load_and_leaves_it_when_cancelled(
    served: tuple[Stub, Callable[[str], float | None]],
) -> None:
    stub, sample = served
    call = stub.Generate(
        chat_request("Write a very long story about a lighthouse.", max_tokens=1000, ignore_eos=True)
    )
    async for message in call:
        if message.choices:
            break

    async def running() -> bool:
        load = await stub.GetLoad(pb.GetLoadRequest())
        return load.running_requests >= 1 and load.kv_cache_usage > 0 and load.in_flight_requests >= 1

    await until(running)
    assert (sample("ragway_model_engine_running_requests") or 0) >= 1
    assert (sample("ragway_model_kv_cache_usage_ratio") or 0) > 0
    load = await stub.GetLoad(pb.GetLoadRequest())
    assert load.max_num_seqs > 0 and load.waiting_requests == 0
    call.cancel()

    async def idle() -> bool:
        load = await stub.GetLoad(pb.GetLoadRequest())
        return (load.running_requests, load.waiting_requests, load.in_flight_requests) == (0, 0, 0)

    await until(idle)
    assert sample("ragway_model_engine_running_requests") == 0
    assert sample("ragway_model_engine_waiting_requests") == 0


@pytest.mark.engine
async def test_the_real_engine_also_exports_vllms_own_gauges(model_service: ModelService) -> None:
    """vLLM's PrometheusStatLogger runs in the service's process and registers in the registry its
    /metrics serves, so its own names sit beside ragway's."""
    async with grpc.aio.insecure_channel(model_service.address) as channel:
        await collect(model_pb2_grpc.ModelServiceStub(channel), chat_request("Hello", max_tokens=2))
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
    ):
        assert metric(model_service.metrics_url, name) >= 0
