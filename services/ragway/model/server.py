"""Run the model service: gRPC server, engine start-up, metrics endpoint, graceful drain, and an
exit on engine failure.

An engine that died or stalled does not come back inside the process (vLLM's EngineDeadError is
final), so the service turns NOT_SERVING at once, fails its in-flight calls UNAVAILABLE and exits
with ENGINE_FAILED_EXIT: its supervisor (`ragway up`, Kubernetes) starts a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health
from prometheus_client import start_http_server

from ragway.core.env_check import warn_unknown_variables
from ragway.core.grpc_server import create_server, set_serving, shutdown_event
from ragway.core.logging import configure_logging
from ragway.model import metrics
from ragway.model.admission import Admission
from ragway.model.config import ModelSettings, get_settings
from ragway.model.engine import BaseEngine, build_engine
from ragway.model.liveness import ENGINE_FAILED_EXIT, EngineWatch
from ragway.model.servicer import ModelServicer
from ragway.v1 import model_pb2, model_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name


@dataclass
class RunningModelServer:
    """A started server; `engine_ready` completes once the engine serves (health SERVING), and
    `engine_failed` once it can no longer serve (health NOT_SERVING, in-flight calls failed), with
    the reason."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    engine: BaseEngine
    admission: Admission
    engine_ready: asyncio.Task[None] = field(repr=False)
    engine_failed: asyncio.Task[str] = field(repr=False)

    async def drain(self, seconds: float) -> None:
        """Stop taking calls, let in-flight streams finish for up to `seconds`, then stop."""
        await set_serving(self.health, [SERVICE_NAME], False)
        self.admission.closed = True
        try:
            await asyncio.wait_for(self.admission.idle.wait(), seconds)
        except TimeoutError:
            log.warning("drain timed out with %d requests in flight; aborting them", self.admission.in_flight)
        await self.stop()

    async def stop(self) -> None:
        self.engine_ready.cancel()
        self.engine_failed.cancel()
        await self.server.stop(grace=1.0)
        self.engine.shutdown()


async def _start_engine(engine: BaseEngine, health_servicer: health.aio.HealthServicer) -> None:
    try:
        await engine.start()
    except Exception:
        log.exception("the engine failed to start")
        raise
    await set_serving(health_servicer, [SERVICE_NAME], True)


async def _watch_engine(
    ready: asyncio.Task[None],
    watch: EngineWatch,
    health_servicer: health.aio.HealthServicer,
    admission: Admission,
) -> str:
    """Once the engine serves, wait for it to fail; then stop claiming to serve, at once."""
    await asyncio.wait([ready])  # a start-up failure is serve()'s to report
    if ready.cancelled() or ready.exception() is not None:
        await asyncio.Future()  # no engine to watch: wait for stop() to cancel this task
    reason = await watch.failure()
    log.error("the engine can no longer serve: %s; failing in-flight calls and exiting", reason)
    await set_serving(health_servicer, [SERVICE_NAME], False)
    admission.closed = True
    watch.engine.fail(reason)
    return reason


async def start_server(settings: ModelSettings, port: int | None = None) -> RunningModelServer:
    """Start serving gRPC at once (NOT_SERVING) and the engine in the background."""
    engine = build_engine(settings)
    admission = Admission(settings.max_num_seqs, settings.max_waiting)
    metrics.ENGINE_UNFINISHED.set_function(engine.num_unfinished_requests)
    metrics.ENGINE_RUNNING.set_function(lambda: engine.load().running)
    metrics.ENGINE_WAITING.set_function(lambda: engine.load().waiting)
    metrics.KV_CACHE_USAGE.set_function(lambda: engine.load().kv_cache_usage)
    watch = EngineWatch(engine, settings.step_timeout_seconds)
    servicer = ModelServicer(engine, admission, watch)
    server, bound, health_servicer = create_server(
        lambda s: model_pb2_grpc.add_ModelServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        settings.host,
        settings.port if port is None else port,
    )
    await set_serving(health_servicer, [SERVICE_NAME], False)
    await server.start()
    log.info("model service listening on %s:%d (engine starting)", settings.host, bound)
    ready = asyncio.create_task(_start_engine(engine, health_servicer))
    failed = asyncio.create_task(_watch_engine(ready, watch, health_servicer, admission))
    return RunningModelServer(server, bound, health_servicer, engine, admission, ready, failed)


async def serve(settings: ModelSettings) -> None:
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    running = await start_server(settings)
    stop = shutdown_event()
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopping, running.engine_ready], return_when=asyncio.FIRST_COMPLETED)
    if running.engine_ready in done and running.engine_ready.exception() is not None:
        await running.stop()
        raise SystemExit(1)
    await asyncio.wait([stopping, running.engine_failed], return_when=asyncio.FIRST_COMPLETED)
    if running.engine_failed.done() and not stop.is_set():
        await running.stop()  # its grace lets the failed calls send their UNAVAILABLE
        raise SystemExit(ENGINE_FAILED_EXIT)
    log.info("shutting down: draining for up to %.0f s", settings.drain_seconds)
    await running.drain(settings.drain_seconds)


def main() -> None:
    settings = get_settings()
    configure_logging("model", settings.log_level)
    warn_unknown_variables(log)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
