"""Search and index options over HTTP, in process (the retrieval client is the stated fake of
tests/utils/fakes.py): what each route sends the retrieval service, and the 400s that name the
field for values no route accepts. That the modes change results is proven against the real
service in tests/rag/test_search_modes.py."""

from __future__ import annotations

from typing import Any

import pytest

from ragway.gateway.clients.retrieval import IndexSettings, SearchSettings
from tests.inprocess.conftest import InProcess
from tests.utils.fakes import FAKE_MODEL

TUNED = {
    "mode": "hybrid",
    "hybrid": {"fusion": "dbsf", "dense_weight": 0.5, "sparse_weight": 2, "prefetch_limit": 120},
    "ranking_options": {"ranker": "none", "candidates": 20},
    "params": {"ef": 256, "nprobe": 8},
}
TUNED_SETTINGS = SearchSettings(
    mode="hybrid",
    fusion="dbsf",
    dense_weight=0.5,
    sparse_weight=2.0,
    prefetch_limit=120,
    ranker="none",
    rerank_candidates=20,
    ef=256,
    nprobe=8,
)
# (a bad search option, the field its 400 must name)
BAD_SEARCHES: list[tuple[dict[str, Any], str]] = [
    ({"mode": "semantic"}, "mode"),
    ({"hybrid": {"fusion": "max"}}, "hybrid.fusion"),
    ({"hybrid": {"dense_weight": -1}}, "hybrid.dense_weight"),
    ({"hybrid": {"dense_weight": 0, "sparse_weight": 0}}, "hybrid"),
    ({"hybrid": {"prefetch_limit": 501}}, "hybrid.prefetch_limit"),
    ({"hybrid": {"k": 60}}, "hybrid.k"),
    ({"params": {"ef": 0}}, "params.ef"),
    ({"params": {"hnsw_ef": 64}}, "params.hnsw_ef"),
    ({"ranking_options": {"candidates": 101}}, "ranking_options.candidates"),
    ({"ranking_options": {"ranker": "cohere-rerank"}}, "ranking_options.ranker"),
    ({"ranking_options": {"ranker": "cross-encoder"}}, "ranking_options.ranker"),
]


def _collection(inprocess: InProcess, headers: dict[str, str], **body: Any) -> None:
    created = inprocess.client.post("/v1/collections", json={"name": "docs", **body}, headers=headers)
    assert created.status_code == 201, created.text
    documents = [{"id": "e1", "text": "Error E4031 means the disk quota is exhausted."}]
    written = inprocess.client.post(
        "/v1/collections/docs/documents", json={"documents": documents}, headers=headers
    )
    assert written.status_code == 200, written.text


def _param(reply: Any) -> str:
    assert reply.status_code == 400, reply.text
    return str(reply.json()["error"]["param"])


def test_collection_index_parameters_reach_the_service_and_are_reported(inprocess: InProcess) -> None:
    headers = inprocess.account()
    index = {"hnsw_m": 32, "hnsw_ef_construct": 200, "on_disk": True}
    _collection(inprocess, headers, index=index)
    store_name = next(iter(inprocess.retrieval.indexes))
    assert inprocess.retrieval.indexes[store_name] == IndexSettings(
        hnsw_m=32, hnsw_ef_construct=200, on_disk=True
    )
    reported = inprocess.client.get("/v1/collections/docs", headers=headers).json()["index"]
    assert reported == {**index, "milvus_index_type": None, "ivf_nlist": None}


@pytest.mark.parametrize(
    ("index", "param"),
    [
        ({"hnsw_m": 1000}, "index.hnsw_m"),
        ({"hnsw_ef_construct": 1}, "index.hnsw_ef_construct"),
        ({"ivf_nlist": 0}, "index.ivf_nlist"),
        ({"on_disk": "sometimes"}, "index.on_disk"),
        ({"quantization": "int8"}, "index.quantization"),
    ],
)
def test_bad_index_parameters_are_a_400_naming_the_field(
    inprocess: InProcess, index: dict[str, Any], param: str
) -> None:
    headers = inprocess.account()
    reply = inprocess.client.post("/v1/collections", json={"name": "docs", "index": index}, headers=headers)
    assert _param(reply) == param
    reply = inprocess.client.post("/v1/vector_stores", json={"index": index}, headers=headers)
    assert _param(reply) == param
    assert not inprocess.retrieval.indexes


def test_collection_search_sends_mode_fusion_ranker_and_params(inprocess: InProcess) -> None:
    headers = inprocess.account()
    _collection(inprocess, headers)
    reply = inprocess.client.post(
        "/v1/collections/docs/search", json={"query": "E4031", **TUNED}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    assert inprocess.retrieval.search_settings[-1] == TUNED_SETTINGS
    # Nothing given: the service's defaults (hybrid, RRF, equal weights, ranker auto).
    inprocess.client.post("/v1/collections/docs/search", json={"query": "E4031"}, headers=headers)
    assert inprocess.retrieval.search_settings[-1] == SearchSettings()


@pytest.mark.parametrize(("option", "param"), BAD_SEARCHES)
def test_bad_search_options_are_a_400_naming_the_field_before_any_search(
    inprocess: InProcess, option: dict[str, Any], param: str
) -> None:
    headers = inprocess.account()
    _collection(inprocess, headers)
    reply = inprocess.client.post(
        "/v1/collections/docs/search", json={"query": "x", **option}, headers=headers
    )
    assert _param(reply) == param
    chat = {
        "model": FAKE_MODEL,
        "messages": [{"role": "user", "content": "x"}],
        "rag": {"collections": ["docs"], **option},
    }
    reply = inprocess.client.post("/v1/chat/completions", json=chat, headers=headers)
    assert _param(reply) == f"rag.{param}"
    assert inprocess.retrieval.searches == []


def test_rankers_are_auto_none_and_the_configured_cross_encoder(inprocess: InProcess) -> None:
    headers = inprocess.account()
    _collection(inprocess, headers)

    def ranker_sent(name: str) -> str:
        reply = inprocess.client.post(
            "/v1/collections/docs/search",
            json={"query": "x", "ranking_options": {"ranker": name}},
            headers=headers,
        )
        assert reply.status_code == 200, reply.text
        return inprocess.retrieval.search_settings[-1].ranker

    assert [ranker_sent(n) for n in ("auto", "none", "default-2024-11-15")] == ["auto", "none", "auto"]
    without = inprocess.client.post(
        "/v1/collections/docs/search",
        json={"query": "x", "ranking_options": {"ranker": "cross-encoder"}},
        headers=headers,
    )
    assert "RAGWAY_RETRIEVAL_RERANKER" in without.json()["error"]["message"]
    inprocess.retrieval.reranker = "ms-marco-MiniLM-L-6-v2"
    assert ranker_sent("cross-encoder") == ranker_sent("ms-marco-MiniLM-L-6-v2") == "cross-encoder"
    other = inprocess.client.post(
        "/v1/collections/docs/search",
        json={"query": "x", "ranking_options": {"ranker": "bge-reranker"}},
        headers=headers,
    )
    assert _param(other) == "ranking_options.ranker"
    assert "ms-marco-MiniLM-L-6-v2" in other.json()["error"]["message"]


def test_chat_rag_option_sends_the_search_settings(inprocess: InProcess) -> None:
    headers = inprocess.account()
    _collection(inprocess, headers)
    chat = {
        "model": FAKE_MODEL,
        "messages": [{"role": "user", "content": "What is E4031?"}],
        "rag": {"collections": ["docs"], **TUNED},
    }
    reply = inprocess.client.post("/v1/chat/completions", json=chat, headers=headers)
    assert reply.status_code == 200, reply.text
    assert inprocess.retrieval.search_settings[-1] == TUNED_SETTINGS


def test_vector_store_index_and_search_options(inprocess: InProcess) -> None:
    headers = inprocess.account()
    index = {"milvus_index_type": "IVF_FLAT", "ivf_nlist": 256}
    store = inprocess.client.post("/v1/vector_stores", json={"name": "kb", "index": index}, headers=headers)
    assert store.status_code == 200, store.text
    assert list(inprocess.retrieval.indexes.values()) == [
        IndexSettings(milvus_index_type="IVF_FLAT", ivf_nlist=256)
    ]
    search = {
        "query": "E4031",
        "mode": "sparse",
        "hybrid": {"fusion": "rrf", "sparse_weight": 3},
        "params": {"ef": 64},
        "ranking_options": {"ranker": "default-2024-11-15", "score_threshold": 0.2},
    }
    reply = inprocess.client.post(
        f"/v1/vector_stores/{store.json()['id']}/search", json=search, headers=headers
    )
    assert reply.status_code == 200, reply.text
    assert inprocess.retrieval.search_settings[-1] == SearchSettings(mode="sparse", sparse_weight=3.0, ef=64)
    for option, param in BAD_SEARCHES:
        reply = inprocess.client.post(
            f"/v1/vector_stores/{store.json()['id']}/search", json={"query": "x", **option}, headers=headers
        )
        assert _param(reply) == param


def test_ranking_options_another_search_api_honours_are_refused(inprocess: InProcess) -> None:
    """One ranker field, and per API only what it honours: collections cut scores with min_score,
    and OpenAI's vector store shape has no candidate count or time budget."""
    headers = inprocess.account()
    _collection(inprocess, headers)
    collections = {"query": "E4031", "ranking_options": {"score_threshold": 0.2}}
    assert (
        _param(inprocess.client.post("/v1/collections/docs/search", json=collections, headers=headers))
        == "ranking_options.score_threshold"
    )
    store = inprocess.client.post("/v1/vector_stores", json={"name": "kb"}, headers=headers).json()
    vector_stores = {"query": "E4031", "ranking_options": {"budget_ms": 50}}
    reply = inprocess.client.post(
        f"/v1/vector_stores/{store['id']}/search", json=vector_stores, headers=headers
    )
    assert _param(reply) == "ranking_options.budget_ms"


def test_readyz_says_which_reranker_is_configured_or_why_none_is(inprocess: InProcess) -> None:
    details = inprocess.client.get("/readyz").json()["details"]["retrieval"]
    assert details["reranker"] is None and "no reranker" in details["notes"][0]
    inprocess.retrieval.reranker = "ms-marco-MiniLM-L-6-v2"
    assert (
        inprocess.client.get("/readyz").json()["details"]["retrieval"]["reranker"] == "ms-marco-MiniLM-L-6-v2"
    )
