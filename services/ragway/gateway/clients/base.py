"""What every gRPC client of the gateway shares: the channel, deadlines, metadata, health, errors.

Every call carries the request id (and trace context) in metadata and a deadline; every gRPC
failure comes back as a domain error naming the service, so routes never see grpc types.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragway.core import errors as core
from ragway.core.grpc_server import FIELD_METADATA, GRPC_OPTIONS
from ragway.core.logging import REQUEST_ID_HEADER, request_id_var
from ragway.gateway.core.errors import Overloaded, UpstreamError

# Client-side round robin over every address the name resolves to (a headless Service in k8s).
# Reconnect backoff capped at 5 s (gRPC's default grows to 120 s): a restarted service is seen
# again — and /readyz turns ready — seconds after it serves, however long it was down.
CHANNEL_OPTIONS = [
    *GRPC_OPTIONS,
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.enable_retries", 1),
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
    # A peer cut off by the network (no RST, packets dropped) is found dead within ~15 s: the
    # channel then fails calls at once as UNAVAILABLE (503) instead of each waiting out its
    # deadline (504), and reconnects by itself when the network heals.
    ("grpc.keepalive_time_ms", 10000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


def translate(error: grpc.aio.AioRpcError, service: str) -> core.RagwayError:
    """A gRPC status from `service` as the domain error the gateway's error table knows."""
    code, detail = error.code(), error.details() or ""
    field = next((str(v) for k, v in (error.trailing_metadata() or ()) if k == FIELD_METADATA), None)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return core.InvalidArgument(detail, field=field)
    if code == grpc.StatusCode.NOT_FOUND:
        return core.NotFound(detail)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return core.AlreadyExists(detail)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Overloaded(f"the {service} service is at capacity: {detail}", retry_after=1.0)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return core.DeadlineExceeded(f"the {service} service did not answer in time")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return core.FailedPrecondition(detail)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return core.Unavailable(f"the {service} service is unavailable; try again shortly")
    return UpstreamError(f"the {service} service failed ({code.name})")


def metadata() -> tuple[tuple[str, str], ...]:
    return ((REQUEST_ID_HEADER, request_id_var.get()),)


class ServiceClient:
    """A channel to one service plus its health check."""

    service = "upstream"

    def __init__(self, address: str, rpc_timeout: float, interceptors: list[Any] | None = None) -> None:
        self.address = address
        self.rpc_timeout = rpc_timeout
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    async def serving(self, timeout: float = 2.0) -> bool:
        try:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def unary(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return await method(request, timeout=timeout or self.rpc_timeout, metadata=metadata())
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, self.service) from exc

    async def close(self) -> None:
        await self.channel.close()
