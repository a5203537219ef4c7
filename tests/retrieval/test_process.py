"""`ragway retrieval` as a real process: metrics over HTTP, graceful SIGTERM, and durability
across a clean restart and across SIGKILL (nothing gets to flush)."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from ragway.v1 import retrieval_pb2 as pb
from ragway.v1 import retrieval_pb2_grpc
from tests.retrieval.corpus import TOPICS
from tests.utils.processes import Service, free_port, grpc_health, start, wait_until


def start_retrieval(data_dir: Path, name: str) -> tuple[Service, str, str]:
    port, metrics_port = free_port(), free_port()
    env = {
        "RAGWAY_DATA_DIR": str(data_dir),
        "RAGWAY_RETRIEVAL_PORT": str(port),
        "RAGWAY_RETRIEVAL_METRICS_PORT": str(metrics_port),
    }
    service = start(name, "retrieval", env)
    address = f"127.0.0.1:{port}"
    wait_until(service, lambda: grpc_health(address) == health_pb2.HealthCheckResponse.SERVING, 300)
    return service, address, f"http://127.0.0.1:{metrics_port}/metrics"


def stub(channel: grpc.Channel) -> retrieval_pb2_grpc.RetrievalServiceStub:
    return retrieval_pb2_grpc.RetrievalServiceStub(channel)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_every_vector_survives_a_restart(tmp_path: Path, stop_signal: signal.Signals) -> None:
    service, address, metrics_url = start_retrieval(tmp_path, f"retrieval-restart-{stop_signal.name}")
    try:
        with grpc.insecure_channel(address) as channel:
            rpc = stub(channel)
            rpc.CreateCollection(pb.CreateCollectionRequest(name="kept"))
            docs = [pb.DocumentInput(id=t, text=text) for t, text, _ in TOPICS]
            rpc.UpsertDocuments(pb.UpsertDocumentsRequest(collection="kept", documents=docs))
            rpc.DeleteDocuments(pb.DeleteDocumentsRequest(collection="kept", ids=[TOPICS[0][0]]))
        metrics = httpx.get(metrics_url, timeout=5).text
        assert f'ragway_retrieval_points{{collection="kept"}} {float(len(TOPICS) - 1)}' in metrics
        assert "ragway_retrieval_chunks_ingested_total 40.0" in metrics
        assert "ragway_retrieval_embedding_batch_seconds_bucket" in metrics
    finally:
        code = service.stop(stop_signal)
    assert code == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL), service.log()[-2000:]

    service, address, _ = start_retrieval(tmp_path, f"retrieval-restarted-{stop_signal.name}")
    try:
        with grpc.insecure_channel(address) as channel:
            info = stub(channel).DescribeCollection(pb.DescribeCollectionRequest(name="kept"))
            assert (info.vector_count, info.document_count) == (len(TOPICS) - 1, len(TOPICS) - 1)
            hits = stub(channel).Search(pb.SearchRequest(collection="kept", text=TOPICS[9][2], top_k=1)).hits
            assert hits[0].document_id == TOPICS[9][0]
    finally:
        assert service.stop() == 0
