"""Trace context travels gateway -> gRPC service: one request is one trace.

A real grpc.aio server (the standard health service, no ragway servicer) and real channels;
spans land in an in-memory exporter. The OTLP test runs a real exporter in a child process
against a small in-process OTLP collector.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from fastapi import FastAPI, Request
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ragway.core.tracing import TracingMiddleware, grpc_client_interceptors, grpc_server_interceptor

CHECK = "grpc.health.v1.Health/Check"
WATCH = "grpc.health.v1.Health/Watch"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
async def stub(provider: TracerProvider) -> AsyncIterator[health_pb2_grpc.HealthStub]:
    server = grpc.aio.server(interceptors=[grpc_server_interceptor(tracer_provider=provider)])
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", interceptors=grpc_client_interceptors(tracer_provider=provider)
    )
    try:
        yield health_pb2_grpc.HealthStub(channel)
    finally:
        await channel.close()
        await server.stop(None)


def spans_named(exporter: InMemorySpanExporter, name: str, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name and s.kind == kind]


async def wait_for_spans(exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    """Server spans end on the server's task, a moment after the client has its answer."""
    for _ in range(200):
        if len(exporter.get_finished_spans()) >= count:
            break
        await asyncio.sleep(0.01)
    return list(exporter.get_finished_spans())


async def test_client_and_server_span_share_one_trace(stub, exporter) -> None:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    await wait_for_spans(exporter, 2)
    [client] = spans_named(exporter, CHECK, SpanKind.CLIENT)
    [server] = spans_named(exporter, CHECK, SpanKind.SERVER)
    assert client.context.trace_id == server.context.trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.attributes["rpc.service"] == "grpc.health.v1.Health"
    assert server.status.status_code is not StatusCode.ERROR


async def test_streaming_call_spans_share_one_trace_and_end_with_the_stream(stub, exporter) -> None:
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await call.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    assert not spans_named(exporter, WATCH, SpanKind.CLIENT), "the client span must cover the whole stream"
    call.cancel()  # what the gateway does when the HTTP client goes away

    await wait_for_spans(exporter, 2)
    [client] = spans_named(exporter, WATCH, SpanKind.CLIENT)
    [server] = spans_named(exporter, WATCH, SpanKind.SERVER)
    assert client.context.trace_id == server.context.trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert client.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]


async def test_failed_call_marks_both_spans_as_errors(stub, exporter) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND

    await wait_for_spans(exporter, 2)
    [client] = spans_named(exporter, CHECK, SpanKind.CLIENT)
    [server] = spans_named(exporter, CHECK, SpanKind.SERVER)
    assert client.context.trace_id == server.context.trace_id
    for span in (client, server):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


async def test_one_http_request_with_several_grpc_calls_is_one_trace(stub, provider, exporter) -> None:
    """The gateway shape: an HTTP request that calls retrieval (unary) then streams from the model."""
    app = FastAPI()
    app.add_middleware(TracingMiddleware, tracer_provider=provider)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, str]:
        await stub.Check(health_pb2.HealthCheckRequest(service=""))
        call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        await call.read()
        call.cancel()
        return {"ok": "yes"}

    incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{incoming_trace}-00f067aa0ba902b7-01"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.post("/v1/chat/completions", headers={"traceparent": traceparent})
        assert response.status_code == 200
        health_response = await client.get("/healthz")
        assert health_response.status_code == 404  # no such route here, and no span for probes

    spans = await wait_for_spans(exporter, 5)
    assert len(spans) == 5, [s.name for s in spans]
    assert {format(s.context.trace_id, "032x") for s in spans} == {incoming_trace}
    [http] = [s for s in spans if s.name == "POST /v1/chat/completions"]
    assert http.kind is SpanKind.SERVER
    assert http.attributes["http.response.status_code"] == 200
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert {s.name for s in clients} == {CHECK, WATCH}
    assert all(s.parent is not None and s.parent.span_id == http.context.span_id for s in clients)


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(self, request, context):
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


CHILD = textwrap.dedent(
    """
    from opentelemetry import trace
    from ragway.core.tracing import setup_tracing

    setup_tracing("fallback-name")
    provider = trace.get_tracer_provider()
    with trace.get_tracer("t").start_as_current_span("chat"):
        pass
    # How many span processors (exporters) are attached: 0 means nothing leaves the process.
    print(len(provider._active_span_processor._span_processors))
    provider.shutdown()
    """
)


async def run_child(env: dict[str, str]) -> int:
    """Run CHILD; returns how many exporters it had attached."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    return int(stdout.decode().split()[-1])


async def test_spans_are_exported_over_otlp_only_when_an_endpoint_is_set() -> None:
    collector = _Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    try:
        assert await run_child(base) == 0, "no endpoint is set, yet an exporter was attached"

        endpoint = f"http://127.0.0.1:{port}"
        env = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "ragway-model"}
        assert await run_child(env) == 1
    finally:
        await server.stop(None)

    spans = [
        (resource_spans.resource, span)
        for request in collector.requests
        for resource_spans in request.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
    ]
    assert [span.name for _, span in spans] == ["chat"]
    resource = spans[0][0]
    service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
    assert service == "ragway-model"  # OTEL_SERVICE_NAME wins over the name the code passes


async def test_cancelling_a_traced_unary_call_cancels_it_on_the_server(provider, exporter) -> None:
    """The interceptor waits for the call's status; a caller that gives up meanwhile must still
    stop the server's work (the gateway cancels calls when the HTTP client goes away)."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b"late"

    handler = grpc.method_handlers_generic_handler(
        "test.Slow", {"Call": grpc.unary_unary_rpc_method_handler(slow)}
    )
    server = grpc.aio.server(interceptors=[grpc_server_interceptor(tracer_provider=provider)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", interceptors=grpc_client_interceptors(tracer_provider=provider)
    )
    try:
        call = channel.unary_unary("/test.Slow/Call")

        async def invoke() -> bytes:
            return await call(b"x")

        caller = asyncio.create_task(invoke())
        await asyncio.wait_for(started.wait(), 10)
        caller.cancel()
        await asyncio.wait_for(cancelled.wait(), 10)
        with pytest.raises(asyncio.CancelledError):
            await caller
    finally:
        await channel.close()
        await server.stop(None)
    spans = await wait_for_spans(exporter, 2)
    assert {s.kind for s in spans} == {SpanKind.CLIENT, SpanKind.SERVER}
    assert len({s.context.trace_id for s in spans}) == 1
