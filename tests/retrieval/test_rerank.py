"""Reranking: a cross-encoder over the first stage's candidates (issue 17 item 2), with a small
real cross-encoder (tests/retrieval/cross_encoder.py) on the embedded Qdrant engine.

Reranking happens in the service above the store, the same for every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.rerank import Reranker
from ragway.retrieval.server import start_server
from ragway.retrieval.service import Mode, Ranker, Retrieval, SearchOptions
from ragway.retrieval.stores.base import Filter
from ragway.retrieval.stores.qdrant_edge import QdrantEdgeStore
from ragway.v1 import retrieval_pb2 as pb
from ragway.v1 import retrieval_pb2_grpc
from tests.retrieval.conftest import load_corpus
from tests.retrieval.corpus import TOPICS


@pytest.fixture
async def reranking(
    tmp_path: Path, embedder: Embedder, reranker: Reranker, settings: RetrievalSettings
) -> AsyncIterator[Retrieval]:
    store = QdrantEdgeStore(tmp_path / "qdrant")
    retrieval = Retrieval(store, embedder, settings, reranker=reranker)
    await load_corpus(retrieval, "corpus")
    yield retrieval
    await store.close()


async def test_reranking_orders_the_candidates_by_the_cross_encoder(
    reranking: Retrieval, reranker: Reranker
) -> None:
    for _, _, question in TOPICS[:8]:
        first = await reranking.search(
            "corpus", question, 10, Filter(), options=SearchOptions(ranker=Ranker.NONE)
        )
        result = await reranking.run_search(
            "corpus",
            question,
            5,
            Filter(),
            None,
            SearchOptions(ranker=Ranker.CROSS_ENCODER, rerank_candidates=10),
        )
        assert result.ranker == reranker.name and result.mode is Mode.HYBRID
        assert len(result.hits) == 5
        # Only the first stage's candidates, ordered by what the model says about each.
        assert {h.document_id for h in result.hits} <= {h.document_id for h in first}
        expected = reranker.score(question, [h.text for h in result.hits])
        assert [h.rerank_score for h in result.hits] == pytest.approx(expected, abs=1e-4)
        assert [h.score for h in result.hits] == [h.rerank_score for h in result.hits]
        assert all(a.score >= b.score for a, b in zip(result.hits, result.hits[1:], strict=False))
        best = max(first, key=lambda h: reranker.score(question, [h.text])[0])
        assert result.hits[0].document_id == best.document_id


async def test_auto_uses_the_configured_reranker_and_none_does_not(reranking: Retrieval) -> None:
    question = TOPICS[9][2]
    auto = await reranking.run_search("corpus", question, 3, Filter())
    assert auto.ranker and all(h.rerank_score is not None for h in auto.hits)
    off = await reranking.run_search("corpus", question, 3, Filter(), None, SearchOptions(ranker=Ranker.NONE))
    assert off.ranker == "" and all(h.rerank_score is None for h in off.hits)


async def test_reranking_over_grpc(
    settings: RetrievalSettings, embedder: Embedder, reranker: Reranker
) -> None:
    running = await start_server(settings, port=0, embedder=embedder, reranker=reranker)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            info = await stub.DescribeService(pb.DescribeServiceRequest())
            assert info.reranker == reranker.name and not any("reranker" in n for n in info.notes)
            await stub.CreateCollection(pb.CreateCollectionRequest(name="c"))
            docs = [pb.DocumentInput(id=t, text=text) for t, text, _ in TOPICS]
            await stub.UpsertDocuments(pb.UpsertDocumentsRequest(collection="c", documents=docs))
            request = pb.SearchRequest(
                collection="c",
                text=TOPICS[20][2],
                top_k=3,
                ranking_options=pb.RankingOptions(ranker="cross-encoder", candidates=12),
            )
            reply = await stub.Search(request)
            assert reply.ranker == reranker.name
            assert all(h.HasField("rerank_score") and h.rerank_score == h.score for h in reply.hits)
            expected = reranker.score(TOPICS[20][2], [h.text for h in reply.hits])
            assert [h.rerank_score for h in reply.hits] == pytest.approx(expected, abs=1e-4)
            assert expected == sorted(expected, reverse=True)
    finally:
        await running.stop()
