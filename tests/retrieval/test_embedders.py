"""Embedding models are models too: a retrieval service serves several embedders by name, lists
them, and a collection keeps the embedder it was built with, refusing writes and queries that mean
another. A real `ragway retrieval` process with two real embedders (tests/utils/embedders.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ragway.retrieval.embedder import DEFAULT_NAME
from ragway.v1 import retrieval_pb2 as pb
from ragway.v1 import retrieval_pb2_grpc
from tests.utils.embedders import SECOND, start_retrieval
from tests.utils.embedders import second_embedder as copy_embedder


@pytest.fixture(scope="module")
def second_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_embedder(tmp_path_factory.mktemp("embedders"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedders-data")


@pytest.fixture(scope="module")
def two_embedders(second_embedder: Path, data_dir: Path) -> Iterator[str]:
    service, address = start_retrieval("retrieval-two-embedders", data_dir, [second_embedder])
    yield address
    service.stop()


@pytest.fixture
def stub(two_embedders: str) -> Iterator[retrieval_pb2_grpc.RetrievalServiceStub]:
    with grpc.insecure_channel(two_embedders) as channel:
        yield retrieval_pb2_grpc.RetrievalServiceStub(channel)


def refused(call: object) -> grpc.RpcError:
    """The error a call ended with; fails the test when it succeeded."""
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


def test_describe_service_lists_every_embedder_default_first(
    stub: retrieval_pb2_grpc.RetrievalServiceStub,
) -> None:
    info = stub.DescribeService(pb.DescribeServiceRequest())
    assert info.embedder == DEFAULT_NAME
    assert [(e.name, e.dimension, e.max_tokens) for e in info.embedders] == [
        (DEFAULT_NAME, 384, 254),
        (SECOND, 384, 254),
    ]


def test_embed_routes_by_model_name(stub: retrieval_pb2_grpc.RetrievalServiceStub) -> None:
    default = stub.Embed(pb.EmbedRequest(texts=["a teal vault door"]))
    second = stub.Embed(pb.EmbedRequest(texts=["a teal vault door"], model=SECOND))
    assert (default.model, second.model) == (DEFAULT_NAME, SECOND)
    assert len(second.vectors[0].values) == 384 and second.total_tokens == default.total_tokens
    error = refused(lambda: stub.Embed(pb.EmbedRequest(texts=["x"], model="text-embedding-3-small")))
    assert error.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert SECOND in error.details() and DEFAULT_NAME in error.details()  # type: ignore[attr-defined]


def test_a_collection_is_built_with_the_embedder_asked_for(
    stub: retrieval_pb2_grpc.RetrievalServiceStub,
) -> None:
    default = stub.CreateCollection(pb.CreateCollectionRequest(name="built-default"))
    second = stub.CreateCollection(pb.CreateCollectionRequest(name="built-second", embedder=SECOND))
    assert (default.embedder, second.embedder) == (DEFAULT_NAME, SECOND)
    assert stub.DescribeCollection(pb.DescribeCollectionRequest(name="built-second")).embedder == SECOND
    error = refused(lambda: stub.CreateCollection(pb.CreateCollectionRequest(name="nope", embedder="bge-m3")))
    assert error.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_writes_and_queries_meaning_another_embedder_are_refused(
    stub: retrieval_pb2_grpc.RetrievalServiceStub,
) -> None:
    stub.CreateCollection(pb.CreateCollectionRequest(name="kept", embedder=SECOND))
    doc = pb.DocumentInput(id="d1", text="The vault door is painted teal.")
    written = stub.UpsertDocuments(
        pb.UpsertDocumentsRequest(collection="kept", documents=[doc], embedder=SECOND)
    )
    assert written.chunks_written == 1
    # The collection's own embedder, named or not, answers.
    for embedder in (SECOND, ""):
        hits = stub.Search(
            pb.SearchRequest(collection="kept", text="what colour is the door", embedder=embedder)
        )
        assert [h.document_id for h in hits.hits] == ["d1"]
    vector = stub.Embed(pb.EmbedRequest(texts=["teal door"], model=SECOND)).vectors[0]
    assert stub.Search(pb.SearchRequest(collection="kept", vector=vector, embedder=SECOND)).hits
    # Another embedder's write, text query or vector is a precondition the caller must fix.
    other = [
        lambda: stub.UpsertDocuments(
            pb.UpsertDocumentsRequest(collection="kept", documents=[doc], embedder=DEFAULT_NAME)
        ),
        lambda: stub.Search(pb.SearchRequest(collection="kept", text="door", embedder=DEFAULT_NAME)),
        lambda: stub.Search(pb.SearchRequest(collection="kept", vector=vector, embedder=DEFAULT_NAME)),
    ]
    for call in other:
        error = refused(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        assert f"built with the embedder {SECOND!r}, not {DEFAULT_NAME!r}" in error.details()  # type: ignore[attr-defined]
    assert stub.DescribeCollection(pb.DescribeCollectionRequest(name="kept")).vector_count == 1


def test_a_collection_whose_embedder_is_gone_is_refused_not_mixed(
    second_embedder: Path, tmp_path: Path
) -> None:
    service, address = start_retrieval("retrieval-before", tmp_path, [second_embedder])
    try:
        with grpc.insecure_channel(address) as channel:
            before = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            before.CreateCollection(pb.CreateCollectionRequest(name="orphan", embedder=SECOND))
    finally:
        service.stop()
    # The same data, served with only the default embedder (of the same dimension).
    service, address = start_retrieval("retrieval-after", tmp_path, [])
    try:
        with grpc.insecure_channel(address) as channel:
            after = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            error = refused(lambda: after.Search(pb.SearchRequest(collection="orphan", text="door")))
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
            assert f"{SECOND!r}, which this service does not serve" in error.details()  # type: ignore[attr-defined]
    finally:
        service.stop()
