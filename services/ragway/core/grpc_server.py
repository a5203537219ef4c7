"""The scaffold every ragway gRPC server shares: error mapping, request ids, health, reflection.

`create_server` returns `(server, port, health)` so tests can bind port 0, and callers flip the
health status themselves (the model service stays NOT_SERVING until its engine is ready).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ragway.core.errors import RagwayError
from ragway.core.logging import REQUEST_ID_HEADER, request_id_var
from ragway.core.tracing import grpc_server_interceptor

log = logging.getLogger(__name__)

# Large enough for a 20 MB document upload in one UpsertDocuments call.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Servers accept the clients' keepalive pings (below), with or without calls in flight;
    # otherwise they answer pings with GOAWAY "too_many_pings".
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
]


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER:
            return str(value)
    return "-"


FIELD_METADATA = "ragway-field"  # trailing metadata naming the invalid parameter


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, RagwayError):
        if exc.field:
            context.set_trailing_metadata(((FIELD_METADATA, exc.field),))
        await context.abort(exc.grpc_code, exc.message)
    log.exception("unhandled error in %s", type(exc).__name__)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the service log")


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps RagwayError to its status, anything else to INTERNAL (logged), and binds the request id."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        # A unary handler and a streaming one that writes with context.write (grpc.health.v1's
        # Watch) are both coroutines: guarded alike. Wrapped as an async generator, every call of
        # a writing handler would fail.
        call = handler.unary_unary or handler.unary_stream
        if handler.unary_unary is not None or not inspect.isasyncgenfunction(call):

            async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
                request_id_var.set(_request_id(context))
                try:
                    return await call(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, exc)

            make = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary is not None
                else grpc.unary_stream_rpc_method_handler
            )
            return make(
                guarded,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            request_id_var.set(_request_id(context))
            try:
                async for item in call(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)

        return grpc.unary_stream_rpc_method_handler(
            stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def create_server(
    register: Callable[[grpc.aio.Server], None],
    service_names: Iterable[str],
    host: str,
    port: int,
    *,
    interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Build (not start) a server with health and reflection; port 0 picks a free port."""
    # Tracing first, so the error mapping runs inside the call's span.
    server = grpc.aio.server(
        interceptors=[grpc_server_interceptor(), *interceptors, ErrorInterceptor()], options=GRPC_OPTIONS
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {host}:{port}")
    return server, bound, health_servicer


def shutdown_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT: how orchestrators and Ctrl-C ask a server to drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def set_serving(
    health_servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool
) -> None:
    """Set the overall ("") and per-service health status."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *names]:
        await health_servicer.set(name, status)
