"""Search modes, fusion, rankers and index parameters over HTTP against the real retrieval service
(embedded Qdrant, MiniLM, the BM25 sparse encoder). No engine: the gateway's model address is
dead, and nothing here generates."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, RetrievalService, start_gateway
from tests.utils.factories import Account, make_account
from tests.utils.processes import free_port

# A manual's error pages. The codes share their digits, so to an embedding they look alike; to BM25
# each code is its own term, the one that ties a question to its page.
CODES = {
    "licence": "Error 7730419: the licence file has expired; renew it in the admin console.",
    "printer": "Error 7730491: the printer tray is empty or jammed; reload the paper and retry.",
    "backup": "Error 7703419: last night's backup job could not reach the tape drive.",
    "network": "Error 7734019: the proxy refused the connection; check the proxy address.",
    "disk": "Error 7073419: the disk quota is exhausted; delete old files or ask for more space.",
    "login": "Error 7730149: too many failed logins; the account is locked for ten minutes.",
}
# Pages about error messages in general, which dense search prefers for "what does error N mean?".
GENERAL = {
    "errors": "What an error means: every message explains what went wrong and what it means for you.",
    "meaning": "Understanding error meanings: the number tells you which problem occurred and why.",
    "codes": "A guide to error numbers and what each one means when the application shows it.",
}
# A page a paraphrase finds without sharing a single word with it.
MOONFISH = {"moonfish": "The moonfish of Lake Ardel glows green at night and eats only silver algae."}
CODE_QUESTION = "What does error 7730419 mean?"
PARAPHRASE = "Which creature emits light in darkness?"


@pytest.fixture(scope="module")
def gateway_for_search(
    retrieval_service: RetrievalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_gateway(
        "gateway-search",
        tmp_path_factory.mktemp("gw-search"),
        f"127.0.0.1:{free_port()}",  # no model service: search needs none
        retrieval_service.address,
    )
    yield gw
    gw.service.stop()


@pytest.fixture(scope="module")
def account(gateway_for_search: Gateway) -> Account:
    return make_account(gateway_for_search.url, gateway_for_search.admin_key)


@pytest.fixture(scope="module")
def corpus(account: Account) -> str:
    name = f"modes-{uuid.uuid4().hex[:8]}"
    docs = [{"id": key, "text": text} for key, text in {**CODES, **GENERAL, **MOONFISH}.items()]
    with account.http() as http:
        created = http.post("/v1/collections", json={"name": name})
        assert created.status_code == 201, created.text
        assert created.json()["hybrid"] is True
        written = http.post(f"/v1/collections/{name}/documents", json={"documents": docs})
        assert written.status_code == 200, written.text
    return name


def search(account: Account, collection: str, query: str, **options: Any) -> list[dict[str, Any]]:
    with account.http() as http:
        reply = http.post(
            f"/v1/collections/{collection}/search", json={"query": query, "top_k": 7, **options}
        )
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]  # type: ignore[no-any-return]


def ids(hits: list[dict[str, Any]]) -> list[str]:
    return [h["document_id"] for h in hits]


def test_sparse_finds_an_exact_code_that_dense_misses_and_hybrid_keeps_it(
    account: Account, corpus: str
) -> None:
    dense = ids(search(account, corpus, CODE_QUESTION, mode="dense"))
    sparse = ids(search(account, corpus, CODE_QUESTION, mode="sparse"))
    hybrid = ids(search(account, corpus, CODE_QUESTION, mode="hybrid"))
    assert dense[0] != "licence" and dense[:3] != sparse[:3]
    assert sparse[0] == "licence"
    assert hybrid.index("licence") < dense.index("licence")
    # The default is hybrid.
    assert ids(search(account, corpus, CODE_QUESTION)) == hybrid


def test_dense_finds_a_paraphrase_that_sparse_cannot(account: Account, corpus: str) -> None:
    assert ids(search(account, corpus, PARAPHRASE, mode="dense"))[0] == "moonfish"
    assert "moonfish" not in ids(search(account, corpus, PARAPHRASE, mode="sparse"))
    assert ids(search(account, corpus, PARAPHRASE, mode="hybrid"))[0] == "moonfish"


def test_weights_and_fusion_change_the_fused_list(account: Account, corpus: str) -> None:
    dense = search(account, corpus, CODE_QUESTION, mode="dense")
    sparse = search(account, corpus, CODE_QUESTION, mode="sparse")
    only_dense = search(account, corpus, CODE_QUESTION, mode="hybrid", hybrid={"sparse_weight": 0})
    only_sparse = search(account, corpus, CODE_QUESTION, mode="hybrid", hybrid={"dense_weight": 0})
    assert ids(only_dense) == ids(dense) and ids(only_sparse) == ids(sparse)
    rrf = search(
        account, corpus, CODE_QUESTION, mode="hybrid", hybrid={"fusion": "rrf", "prefetch_limit": 50}
    )
    dbsf = search(account, corpus, CODE_QUESTION, mode="hybrid", hybrid={"fusion": "dbsf"})
    # RRF scores are sums of 1/(k + rank), k = 5, at most 2/6; DBSF sums normalised scores, up to 2.
    assert max(h["score"] for h in rrf) <= 2 / 6 + 1e-6 < max(h["score"] for h in dbsf)
    leaning_sparse = search(
        account, corpus, CODE_QUESTION, mode="hybrid", hybrid={"dense_weight": 1, "sparse_weight": 5}
    )
    assert ids(leaning_sparse)[0] == "licence"
    # Qdrant's DBSF normalises each list's scores: weights there would be accepted and ignored.
    with account.http() as http:
        reply = http.post(
            f"/v1/collections/{corpus}/search",
            json={"query": CODE_QUESTION, "mode": "hybrid", "hybrid": {"fusion": "dbsf", "sparse_weight": 5}},
        )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "hybrid"
    assert "weights need fusion rrf" in reply.json()["error"]["message"]


def test_a_min_score_without_a_mode_keeps_its_cosine_meaning(account: Account, corpus: str) -> None:
    dense = search(account, corpus, PARAPHRASE, mode="dense")
    cut = dense[0]["score"] - 1e-4
    assert ids(search(account, corpus, PARAPHRASE, min_score=cut)) == ["moonfish"]


def test_search_params_are_accepted_and_bounded(account: Account, corpus: str) -> None:
    assert ids(search(account, corpus, PARAPHRASE, mode="dense", params={"ef": 16}))[0] == "moonfish"
    with account.http() as http:
        reply = http.post(f"/v1/collections/{corpus}/search", json={"query": "x", "params": {"ef": 5000}})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "params.ef"


def test_a_cross_encoder_the_service_lacks_is_a_400_naming_the_ranker(account: Account, corpus: str) -> None:
    with account.http() as http:
        reply = http.post(
            f"/v1/collections/{corpus}/search",
            json={"query": PARAPHRASE, "ranking_options": {"ranker": "cross-encoder"}},
        )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "ranking_options.ranker"
    assert ids(search(account, corpus, PARAPHRASE, ranking_options={"ranker": "none"}))[0] == "moonfish"


def test_index_parameters_given_at_creation_are_the_ones_in_effect(account: Account) -> None:
    name = f"tuned-{uuid.uuid4().hex[:8]}"
    index = {"hnsw_m": 32, "hnsw_ef_construct": 200, "on_disk": True}
    with account.http() as http:
        created = http.post("/v1/collections", json={"name": name, "index": index})
        assert created.status_code == 201, created.text
        assert {k: created.json()["index"][k] for k in index} == index
        store = http.post("/v1/vector_stores", json={"name": "kb", "index": {"hnsw_m": 8}})
        assert store.status_code == 200, store.text
        listed = {c["name"]: c for c in http.get("/v1/collections").json()["data"]}
    assert listed[store.json()["id"]]["index"]["hnsw_m"] == 8
    assert listed[name]["index"]["hnsw_ef_construct"] == 200


def test_vector_store_search_takes_mode_and_ranker(account: Account, corpus: str) -> None:
    with account.http() as http:
        stores = {s["name"]: s["id"] for s in http.get("/v1/vector_stores").json()["data"]}
        url = f"/v1/vector_stores/{stores[corpus]}/search"
        sparse = http.post(url, json={"query": CODE_QUESTION, "mode": "sparse", "max_num_results": 3})
        dense = http.post(url, json={"query": CODE_QUESTION, "mode": "dense", "max_num_results": 3})
        refused = http.post(
            url, json={"query": CODE_QUESTION, "ranking_options": {"ranker": "cross-encoder"}}
        )
        default = http.post(
            url, json={"query": CODE_QUESTION, "ranking_options": {"ranker": "default-2024-11-15"}}
        )
    assert sparse.status_code == dense.status_code == default.status_code == 200, sparse.text
    assert sparse.json()["data"][0]["file_id"] == "licence" != dense.json()["data"][0]["file_id"]
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "ranking_options.ranker"


def test_readyz_says_no_reranker_is_configured_and_why(gateway_for_search: Gateway) -> None:
    ready = httpx.get(f"{gateway_for_search.url}/readyz").json()
    retrieval = ready["details"]["retrieval"]
    assert retrieval["backend"] == "qdrant" and retrieval["sparse_encoder"] == "bm25-en-v2"
    assert retrieval["reranker"] is None
    assert any("RAGWAY_RETRIEVAL_RERANKER" in note for note in retrieval["notes"])
