"""OpenTelemetry tracing shared by the three services: one chat request is one trace.

The gateway opens a server span per HTTP request (`TracingMiddleware`); its gRPC client
interceptors open a client span per call and carry the W3C trace context (`traceparent`,
`tracestate`) in the call metadata; the model and retrieval services' server interceptor
extracts it and runs each call inside a server span that is a child of that client span.

Spans are exported over OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the exporter reads the other standard `OTEL_*`
variables itself (headers, insecure, timeout). Without an endpoint nothing leaves the process,
but trace ids still exist and still travel between services.

The propagation is written directly against `opentelemetry.propagate` rather than the contrib
gRPC instrumentation, whose grpc.aio support wraps calls in ways that hide `call.cancel()`
from the caller; the gateway relies on cancelling a stream to abort generation in the engine.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

log = logging.getLogger(__name__)

TRACER_NAME = "ragway"
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_configured = False


def exporter_endpoint() -> str:
    """The OTLP endpoint spans go to, or "" when exporting is off."""
    for var in ENDPOINT_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return ""


def setup_tracing(service_name: str) -> None:
    """Install the process-wide tracer provider for `service_name` (once; later calls do nothing).

    `OTEL_SERVICE_NAME`, when set, wins over `service_name`, as the OpenTelemetry spec says.
    The OTLP exporter is attached only when an endpoint is configured.
    """
    global _configured
    if _configured:
        return
    from opentelemetry.sdk.resources import OTEL_SERVICE_NAME, SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    name = os.environ.get(OTEL_SERVICE_NAME, "").strip() or service_name
    provider = SdkTracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    endpoint = exporter_endpoint()
    if endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("tracing: exporting spans of %s to %s", name, endpoint)
    trace.set_tracer_provider(provider)
    _configured = True


def _tracer(tracer_provider: TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)


def _method_name(method: str | bytes) -> str:
    name = method.decode() if isinstance(method, bytes) else method
    return name.lstrip("/")


def _rpc_attributes(full_method: str) -> dict[str, str]:
    service, _, method = full_method.partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def _set_grpc_status(span: trace.Span, code: grpc.StatusCode | None, details: str | None = None) -> None:
    code = code or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, details or code.name))


# --- client side (the gateway) -------------------------------------------------------------


class _ClientInterceptor:
    """Opens a CLIENT span per call and injects its context into the outgoing metadata."""

    def __init__(self, tracer_provider: TracerProvider | None) -> None:
        self._tracer_provider = tracer_provider

    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[trace.Span, grpc.aio.ClientCallDetails]:
        full_method = _method_name(details.method)
        span = _tracer(self._tracer_provider).start_span(
            full_method, kind=SpanKind.CLIENT, attributes=_rpc_attributes(full_method)
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata(*(tuple(details.metadata) if details.metadata else ()))
        for key, value in carrier.items():
            metadata[key] = value
        return span, details._replace(metadata=metadata)

    async def _call(
        self, continuation: Callable[..., Awaitable[Any]], details: grpc.aio.ClientCallDetails, request: Any
    ) -> tuple[trace.Span, Any]:
        """Open the span and start the call with the trace context; a call that fails to start
        ends its span at once."""
        span, traced = self._start(details)
        try:
            return span, await continuation(traced, request)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.end()
            raise


async def _finish_client_span(call: grpc.aio.Call, span: trace.Span) -> None:
    try:
        code = await call.code()
        _set_grpc_status(span, code, await call.details() if code is not grpc.StatusCode.OK else None)
    except BaseException as exc:  # the span must end even if the loop is shutting down
        span.record_exception(exc)
        raise
    finally:
        span.end()


class _UnaryUnaryClientInterceptor(_ClientInterceptor, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[grpc.aio.UnaryUnaryCall]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> grpc.aio.UnaryUnaryCall:
        span, call = await self._call(continuation, client_call_details, request)
        # Waits for the status without raising; the caller still sees the error when it awaits.
        try:
            await _finish_client_span(call, span)
        except asyncio.CancelledError:
            # The caller gave up while we waited: grpc does not know this call yet, so cancel it here.
            call.cancel()
            raise
        return call


class _UnaryStreamClientInterceptor(_ClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[grpc.aio.UnaryStreamCall]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> grpc.aio.UnaryStreamCall:
        span, call = await self._call(continuation, client_call_details, request)
        # The call itself goes back to the caller (so `call.cancel()` still aborts the stream);
        # the span ends when the stream does, however it ends.
        loop_tasks: set[Any] = set()

        def on_done(done_call: grpc.aio.Call) -> None:
            task = asyncio.get_running_loop().create_task(_finish_client_span(done_call, span))
            loop_tasks.add(task)
            task.add_done_callback(loop_tasks.discard)

        call.add_done_callback(on_done)
        return call


def grpc_client_interceptors(
    *, tracer_provider: TracerProvider | None = None
) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for `grpc.aio.insecure_channel(..., interceptors=...)` that trace unary-unary
    and unary-stream calls and carry the trace context to the server in the call metadata."""
    return [_UnaryUnaryClientInterceptor(tracer_provider), _UnaryStreamClientInterceptor(tracer_provider)]


# --- server side (model and retrieval services) --------------------------------------------


def _extract(metadata: Any) -> otel_context.Context:
    carrier: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str):  # binary (-bin) headers carry no trace context
            carrier[key] = value
    return propagate.extract(carrier)


class _ServerInterceptor(grpc.aio.ServerInterceptor):
    """Runs each call inside a SERVER span whose parent is the caller's span."""

    def __init__(self, tracer_provider: TracerProvider | None) -> None:
        self._tracer_provider = tracer_provider

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        full_method = _method_name(handler_call_details.method)
        parent = _extract(handler_call_details.invocation_metadata)
        tracer = _tracer(self._tracer_provider)

        def span() -> trace.Span:
            return tracer.start_span(
                full_method, context=parent, kind=SpanKind.SERVER, attributes=_rpc_attributes(full_method)
            )

        def wrap(behavior: Callable[..., Any]) -> Callable[..., Any]:
            if inspect.isasyncgenfunction(behavior):

                async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                    current = span()
                    with trace.use_span(current, end_on_exit=True, record_exception=False):
                        try:
                            async for item in behavior(request, context):
                                yield item
                        except BaseException as exc:
                            _record_server_error(current, context, exc)
                            raise
                        _set_grpc_status(current, context.code())

                return stream

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                current = span()
                with trace.use_span(current, end_on_exit=True, record_exception=False):
                    try:
                        result = await behavior(request, context)
                    except BaseException as exc:
                        _record_server_error(current, context, exc)
                        raise
                    _set_grpc_status(current, context.code())
                    return result

            return unary

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                wrap(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                wrap(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                wrap(handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            wrap(handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _record_server_error(span: trace.Span, context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):
        _set_grpc_status(span, grpc.StatusCode.CANCELLED)
        return
    code = context.code()
    if isinstance(exc, grpc.aio.AbortError) and code is not None:
        _set_grpc_status(span, code, context.details())
        return
    span.record_exception(exc)
    _set_grpc_status(span, grpc.StatusCode.INTERNAL if code in (None, grpc.StatusCode.OK) else code, str(exc))


def grpc_server_interceptor(*, tracer_provider: TracerProvider | None = None) -> grpc.aio.ServerInterceptor:
    """A server interceptor that continues the caller's trace; put it first in the interceptor list
    so that error mapping and the handler run inside the span."""
    return _ServerInterceptor(tracer_provider)


# --- HTTP side (the gateway) ----------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TracingMiddleware:
    """Pure ASGI middleware: one SERVER span per HTTP request, continuing an incoming
    `traceparent` header; the gRPC calls the request makes (streams included) are its children.

    Wire it with `app.add_middleware(TracingMiddleware)`; `excluded_paths` keeps probes and
    scrapes out of the traces.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer_provider: TracerProvider | None = None,
        excluded_paths: frozenset[str] = frozenset({"/healthz", "/readyz", "/metrics"}),
    ) -> None:
        self.app = app
        self._tracer_provider = tracer_provider
        self._excluded = excluded_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self._excluded:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        parent = propagate.extract(headers)
        method = scope.get("method", "GET")
        path = scope.get("path", "/")
        span = _tracer(self._tracer_provider).start_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        status: dict[str, int] = {}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
                span.set_attribute("http.response.status_code", status["code"])
            await send(message)

        with trace.use_span(span, end_on_exit=True, record_exception=True):
            await self.app(scope, receive, send_wrapper)
            route = scope.get("route")
            if route is not None and hasattr(route, "path"):  # the template, not the raw path
                span.update_name(f"{method} {route.path}")
            if status.get("code", 200) >= 500:
                span.set_status(Status(StatusCode.ERROR))
