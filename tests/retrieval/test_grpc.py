"""The retrieval service over gRPC: a real server on port 0, the embedded Qdrant engine, the real
embedder. Checks the wire contract: statuses, health, reflection, every RPC end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.server import RunningServer, start_server
from ragway.retrieval.sparse import NAME as SPARSE_ENCODER
from ragway.v1 import retrieval_pb2 as pb
from ragway.v1 import retrieval_pb2_grpc
from tests.retrieval.corpus import TOPICS, metadata
from tests.retrieval.pdf import make_pdf

Stub: TypeAlias = retrieval_pb2_grpc.RetrievalServiceStub


@pytest.fixture
async def server(settings: RetrievalSettings, embedder: Embedder) -> AsyncIterator[RunningServer]:
    running = await start_server(settings, port=0, embedder=embedder)
    yield running
    await running.stop()


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


async def load(stub: Stub, name: str = "corpus") -> None:
    await stub.CreateCollection(pb.CreateCollectionRequest(name=name))
    docs = [
        pb.DocumentInput(id=t, text=text, metadata=struct(metadata(i, t)))
        for i, (t, text, _) in enumerate(TOPICS)
    ]
    reply = await stub.UpsertDocuments(pb.UpsertDocumentsRequest(collection=name, documents=docs))
    assert reply.chunks_written == len(TOPICS)


async def status_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code()


async def test_health_and_reflection(channel: grpc.aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    async for response in responses:
        names = {s.name for s in response.list_services_response.service}
        assert "ragway.v1.RetrievalService" in names
        break


async def test_collections_lifecycle(stub: Stub) -> None:
    created = await stub.CreateCollection(
        pb.CreateCollectionRequest(
            name="user-42_notes",
            distance=pb.DISTANCE_DOT,
            index=pb.IndexParams(hnsw_m=8, hnsw_ef_construct=50),
        )
    )
    assert (created.name, created.dimension, created.embedder, created.backend) == (
        "user-42_notes",
        384,
        "all-MiniLM-L6-v2",
        "qdrant",
    )
    assert (created.distance, created.index.hnsw_m, created.index.hnsw_ef_construct) == (
        pb.DISTANCE_DOT,
        8,
        50,
    )
    await load(stub)
    listed = await stub.ListCollections(pb.ListCollectionsRequest())
    assert [c.name for c in listed.collections] == ["corpus", "user-42_notes"]
    info = await stub.DescribeCollection(pb.DescribeCollectionRequest(name="corpus"))
    assert (info.vector_count, info.document_count) == (len(TOPICS), len(TOPICS))
    deleted = await stub.DeleteCollection(pb.DeleteCollectionRequest(name="corpus"))
    assert deleted.deleted_vectors == len(TOPICS)
    code = await status_of(stub.DescribeCollection(pb.DescribeCollectionRequest(name="corpus")))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_search_with_filter_and_threshold(stub: Stub) -> None:
    await load(stub)
    reply = await stub.Search(pb.SearchRequest(collection="corpus", text=TOPICS[12][2], top_k=3))
    assert reply.hits[0].document_id == TOPICS[12][0]
    assert reply.hits[0].metadata["topic"] == TOPICS[12][0]
    assert reply.hits[0].chunk_index == 0 and reply.hits[0].text == TOPICS[12][1]
    where = pb.Filter(
        must=[
            pb.FieldCondition(key="category", equals=struct_pb2.Value(string_value="food")),
            pb.FieldCondition(key="year", range=pb.Range(gte=2010)),
        ]
    )
    reply = await stub.Search(pb.SearchRequest(collection="corpus", text="drinks", top_k=10, filter=where))
    assert reply.hits and all(
        h.metadata["category"] == "food" and h.metadata["year"] >= 2010 for h in reply.hits
    )
    # OR, NOT and nesting over the wire: (food or year 2003) and not public.
    where = pb.Filter(
        must=[
            pb.FieldCondition(
                filter=pb.Filter(
                    should=[
                        pb.FieldCondition(key="category", equals=struct_pb2.Value(string_value="food")),
                        pb.FieldCondition(key="year", equals=struct_pb2.Value(number_value=2003)),
                    ]
                )
            )
        ],
        must_not=[pb.FieldCondition(key="public", equals=struct_pb2.Value(bool_value=True))],
    )
    reply = await stub.Search(pb.SearchRequest(collection="corpus", text="drinks", top_k=40, filter=where))
    assert reply.hits and all(
        (h.metadata["category"] == "food" or h.metadata["year"] == 2003) and not h.metadata["public"]
        for h in reply.hits
    )
    assert await stub.Search(pb.SearchRequest(collection="corpus", text="x", top_k=3, filter=nested(8)))
    # Score thresholds are per mode: a cosine cut for dense search.
    reply = await stub.Search(
        pb.SearchRequest(
            collection="corpus",
            text=TOPICS[5][2],
            top_k=10,
            score_threshold=0.45,
            mode=pb.SEARCH_MODE_DENSE,
        )
    )
    assert [h.document_id for h in reply.hits] == [TOPICS[5][0]]
    assert reply.mode == pb.SEARCH_MODE_DENSE


async def test_documents_in_every_format(stub: Stub) -> None:
    await stub.CreateCollection(pb.CreateCollectionRequest(name="docs"))
    docs = [
        pb.DocumentInput(id="md", text="# Owls\nOwls hunt at night.", content_type="text/markdown"),
        pb.DocumentInput(
            id="html", data=b"<h1>Bats</h1><p>Bats use echolocation.</p>", content_type="text/html"
        ),
        pb.DocumentInput(
            id="pdf", data=make_pdf(["Moths are drawn to light."]), content_type="application/pdf"
        ),
        pb.DocumentInput(id="txt", data=b"Frogs sing after rain.", content_type="text/plain; charset=utf-8"),
    ]
    reply = await stub.UpsertDocuments(pb.UpsertDocumentsRequest(collection="docs", documents=docs))
    assert [(d.id, d.chunks) for d in reply.documents] == [("md", 1), ("html", 1), ("pdf", 1), ("txt", 1)]
    doc = await stub.GetDocument(pb.GetDocumentRequest(collection="docs", id="md"))
    assert [c.text for c in doc.chunks] == ["Owls\n\nOwls hunt at night."]
    doc = await stub.GetDocument(pb.GetDocumentRequest(collection="docs", id="html"))
    assert [c.text for c in doc.chunks] == ["Bats\n\nBats use echolocation."]
    hits = (await stub.Search(pb.SearchRequest(collection="docs", text="insects attracted to lamps"))).hits
    assert hits[0].document_id == "pdf"
    page = await stub.ListDocuments(pb.ListDocumentsRequest(collection="docs", limit=3))
    assert [d.id for d in page.documents] == ["html", "md", "pdf"] and page.next_after == "pdf"
    page = await stub.ListDocuments(pb.ListDocumentsRequest(collection="docs", limit=3, after="pdf"))
    assert [d.id for d in page.documents] == ["txt"] and page.next_after == ""
    deleted = await stub.DeleteDocuments(pb.DeleteDocumentsRequest(collection="docs", ids=["md", "pdf"]))
    assert deleted.deleted_vectors == 2
    code = await status_of(stub.GetDocument(pb.GetDocumentRequest(collection="docs", id="md")))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_embed_returns_one_normalised_vector_per_text(stub: Stub) -> None:
    reply = await stub.Embed(pb.EmbedRequest(texts=["hello world", "a second, longer sentence to embed"]))
    assert reply.model == "all-MiniLM-L6-v2"
    assert [len(v.values) for v in reply.vectors] == [384, 384]
    assert abs(sum(x * x for x in reply.vectors[0].values) - 1.0) < 1e-3
    assert reply.total_tokens >= 4 + 9


async def test_metrics_count_what_happened(stub: Stub) -> None:
    before = REGISTRY.get_sample_value("ragway_retrieval_chunks_ingested_total") or 0.0
    await load(stub, "metered")
    await stub.Search(pb.SearchRequest(collection="metered", text="volcano"))
    assert REGISTRY.get_sample_value("ragway_retrieval_chunks_ingested_total") == before + len(TOPICS)
    assert REGISTRY.get_sample_value("ragway_retrieval_points", {"collection": "metered"}) == len(TOPICS)
    searches = REGISTRY.get_sample_value("ragway_retrieval_search_seconds_count", {"mode": "hybrid"})
    assert (searches or 0) >= 1
    assert (REGISTRY.get_sample_value("ragway_retrieval_embedding_batch_seconds_count") or 0) >= 1


def value(**kind: Any) -> struct_pb2.Value:
    return struct_pb2.Value(**kind)


def upsert(collection: str = "corpus", **doc: Any) -> pb.UpsertDocumentsRequest:
    return pb.UpsertDocumentsRequest(collection=collection, documents=[pb.DocumentInput(**doc)])


def search_where(**condition: Any) -> pb.SearchRequest:
    where = pb.Filter(must=[pb.FieldCondition(**condition)])
    return pb.SearchRequest(collection="corpus", text="x", filter=where)


def search(**request: Any) -> pb.SearchRequest:
    return pb.SearchRequest(collection="corpus", **request)


MIXED = struct_pb2.ListValue(values=[value(number_value=1), value(string_value="a")])
YEAR = pb.FieldCondition(key="year", equals=value(number_value=2003))


def nested(depth: int) -> pb.Filter:
    where = pb.Filter(must=[YEAR])
    for _ in range(depth):
        where = pb.Filter(should=[pb.FieldCondition(filter=where)])
    return where


BAD_REQUESTS: list[tuple[str, str, Any]] = [
    ("upsert unknown collection", "NOT_FOUND", upsert("nope", id="a", text="x")),
    ("search unknown collection", "NOT_FOUND", pb.SearchRequest(collection="nope", text="x")),
    ("delete unknown collection", "NOT_FOUND", pb.DeleteCollectionRequest(name="nope")),
    ("empty text", "INVALID_ARGUMENT", upsert(id="a", text="")),
    ("no documents", "INVALID_ARGUMENT", pb.UpsertDocumentsRequest(collection="corpus")),
    ("empty document id", "INVALID_ARGUMENT", upsert(text="x")),
    (
        "unsupported content type",
        "INVALID_ARGUMENT",
        upsert(id="a", data=b"GIF89a", content_type="image/gif"),
    ),
    (
        "chunk too big",
        "INVALID_ARGUMENT",
        upsert(id="a", text="x", chunking=pb.ChunkingOptions(chunk_tokens=4096)),
    ),
    ("vector of the wrong dimension", "INVALID_ARGUMENT", search(vector=pb.Vector(values=[0.1, 0.2]))),
    ("no query", "INVALID_ARGUMENT", search()),
    ("blank query", "INVALID_ARGUMENT", search(text="  ")),
    ("top_k too large", "INVALID_ARGUMENT", search(text="x", top_k=101)),
    (
        "filter key not an identifier",
        "INVALID_ARGUMENT",
        search_where(key="a b", equals=value(string_value="x")),
    ),
    ("filter condition unset", "INVALID_ARGUMENT", search_where(key="year")),
    (
        "filter on a struct",
        "INVALID_ARGUMENT",
        search_where(key="year", equals=value(struct_value=struct({"a": 1}))),
    ),
    ("filter any_of mixed types", "INVALID_ARGUMENT", search_where(key="year", any_of=MIXED)),
    ("filter range without bounds", "INVALID_ARGUMENT", search_where(key="year", range=pb.Range())),
    ("nested filter with a key", "INVALID_ARGUMENT", search_where(key="year", filter=pb.Filter(must=[YEAR]))),
    ("empty nested filter", "INVALID_ARGUMENT", search_where(filter=pb.Filter())),
    ("filter nested too deep", "INVALID_ARGUMENT", search(text="x", filter=nested(9))),
    (
        "bad key in a must_not clause",
        "INVALID_ARGUMENT",
        search(
            text="x", filter=pb.Filter(must_not=[pb.FieldCondition(key="a b", equals=value(bool_value=True))])
        ),
    ),
    ("delete without ids or filter", "INVALID_ARGUMENT", pb.DeleteDocumentsRequest(collection="corpus")),
    ("bad collection name", "INVALID_ARGUMENT", pb.CreateCollectionRequest(name="no/slashes")),
    ("existing collection", "ALREADY_EXISTS", pb.CreateCollectionRequest(name="corpus")),
    ("no texts to embed", "INVALID_ARGUMENT", pb.EmbedRequest()),
    ("empty text to embed", "INVALID_ARGUMENT", pb.EmbedRequest(texts=["ok", ""])),
    ("document not found", "NOT_FOUND", pb.GetDocumentRequest(collection="corpus", id="nope")),
    ("page too large", "INVALID_ARGUMENT", pb.ListDocumentsRequest(collection="corpus", limit=5000)),
]

_METHODS = {
    pb.UpsertDocumentsRequest: "UpsertDocuments",
    pb.SearchRequest: "Search",
    pb.DeleteCollectionRequest: "DeleteCollection",
    pb.CreateCollectionRequest: "CreateCollection",
    pb.DeleteDocumentsRequest: "DeleteDocuments",
    pb.EmbedRequest: "Embed",
    pb.GetDocumentRequest: "GetDocument",
    pb.ListDocumentsRequest: "ListDocuments",
}


async def test_bad_input_gets_a_precise_status(stub: Stub) -> None:
    await load(stub)
    for case, expected, request in BAD_REQUESTS:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub, _METHODS[type(request)])(request)
        assert raised.value.code().name == expected, f"{case}: {raised.value.code()} {raised.value.details()}"
        assert raised.value.details(), case
    info = await stub.DescribeCollection(pb.DescribeCollectionRequest(name="corpus"))
    assert info.vector_count == len(TOPICS), "refused writes must not have written anything"


async def test_search_modes_over_the_wire(stub: Stub) -> None:
    await load(stub)
    question = TOPICS[12][2]
    for mode in (pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_SPARSE, pb.SEARCH_MODE_HYBRID):
        reply = await stub.Search(pb.SearchRequest(collection="corpus", text=question, top_k=3, mode=mode))
        assert reply.mode == mode and not reply.fallback_reason and not reply.ranker
        assert reply.hits[0].document_id == TOPICS[12][0]
        assert not reply.hits[0].HasField("rerank_score")
    weighted = pb.SearchRequest(
        collection="corpus",
        text=question,
        top_k=3,
        hybrid=pb.HybridOptions(fusion=pb.FUSION_RRF, dense_weight=2.0, prefetch_limit=20),
        params=pb.SearchParams(ef=64),
    )
    assert (await stub.Search(weighted)).hits[0].document_id == TOPICS[12][0]
    # Qdrant's DBSF normalises each list's scores, so a weight would be accepted and ignored.
    weighted.hybrid.fusion = pb.FUSION_DBSF
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Search(weighted)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "weights need fusion rrf" in (refused.value.details() or "")
    weighted.hybrid.dense_weight = 1.0  # equal weights are what DBSF does anyway
    assert (await stub.Search(weighted)).hits[0].document_id == TOPICS[12][0]
    info = await stub.DescribeCollection(pb.DescribeCollectionRequest(name="corpus"))
    assert info.sparse_encoder == SPARSE_ENCODER


async def test_search_options_are_checked(stub: Stub) -> None:
    await load(stub)
    bad = [
        pb.SearchRequest(collection="corpus", text="x", ranking_options=pb.RankingOptions(ranker="magic")),
        pb.SearchRequest(collection="corpus", text="x", hybrid=pb.HybridOptions(dense_weight=-1)),
        pb.SearchRequest(collection="corpus", text="x", params=pb.SearchParams(ef=100_000)),
        pb.SearchRequest(
            collection="corpus", vector=pb.Vector(values=[0.1] * 384), mode=pb.SEARCH_MODE_SPARSE
        ),
    ]
    for request in bad:
        assert await status_of(stub.Search(request)) == grpc.StatusCode.INVALID_ARGUMENT
    # No cross-encoder is configured here: asking for one is a precondition the caller can fix.
    needs = pb.SearchRequest(
        collection="corpus", text="x", ranking_options=pb.RankingOptions(ranker="cross-encoder")
    )
    assert await status_of(stub.Search(needs)) == grpc.StatusCode.FAILED_PRECONDITION


async def test_describe_service_says_there_is_no_reranker(stub: Stub) -> None:
    info = await stub.DescribeService(pb.DescribeServiceRequest())
    assert (info.backend, info.embedder, info.sparse_encoder) == (
        "qdrant",
        "all-MiniLM-L6-v2",
        SPARSE_ENCODER,
    )
    assert info.reranker == ""
    assert any("no reranker" in note for note in info.notes)


async def test_create_collection_takes_index_parameters(stub: Stub) -> None:
    index = pb.IndexParams(hnsw_m=24, hnsw_ef_construct=200, on_disk=True)
    info = await stub.CreateCollection(pb.CreateCollectionRequest(name="tuned", index=index))
    assert (info.index.hnsw_m, info.index.hnsw_ef_construct, info.index.on_disk) == (24, 200, True)
    bad = pb.CreateCollectionRequest(name="bad", index=pb.IndexParams(hnsw_m=10_000))
    assert await status_of(stub.CreateCollection(bad)) == grpc.StatusCode.INVALID_ARGUMENT
