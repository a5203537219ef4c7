"""Killing an engine from outside, as an OOM kill or a crashed GPU driver would, and watching the
model service's health while it happens: shared by the engine-death tests of a lone model service
and of `ragway up`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc


def engine_core(model_service_pid: int) -> psutil.Process:
    """The vLLM EngineCore process under a model service (its process title names it)."""
    for child in psutil.Process(model_service_pid).children(recursive=True):
        try:
            if "EngineCore" in child.name() or "EngineCore" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"process {model_service_pid} has no EngineCore descendant")


async def health_changes(address: str) -> AsyncIterator[tuple[float, int]]:
    """(monotonic time, status) of every overall health status the service announces, through
    grpc.health.v1 Watch; ends when the service goes away."""
    async with grpc.aio.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        try:
            async for reply in watch:
                yield time.monotonic(), int(reply.status)
        except grpc.aio.AioRpcError:
            return


async def not_serving_at(changes: AsyncIterator[tuple[float, int]]) -> float | None:
    """When the watched service said NOT_SERVING (None if it went away without saying so)."""
    async for at, status in changes:
        if status == health_pb2.HealthCheckResponse.NOT_SERVING:
            return at
    return None
