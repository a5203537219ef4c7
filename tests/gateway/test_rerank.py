"""The LLM reranker through the real stack (real engine, retrieval service, gateway): Cohere's
SDK against /v1/rerank and /v2/rerank, vLLM's /v1/score wire format, the usage rows each call
leaves, and ranker "llm" in a collection search."""

from __future__ import annotations

import cohere
import httpx

from tests.conftest import MODEL_NAME, Gateway
from tests.utils.db import rows
from tests.utils.factories import make_account
from tests.utils.passages import PASSAGES, QUESTIONS

KEYS = list(PASSAGES)
DOCUMENTS = [PASSAGES[k] for k in KEYS]


def _usage(gateway: Gateway, user_id: str, endpoint: str) -> list[tuple[int, int, str]]:
    return [
        (int(r[0]), int(r[1]), str(r[2]))
        for r in rows(
            gateway.database_url,
            "SELECT prompt_tokens, cost, model FROM usage_records WHERE user_id = :u AND endpoint = :e",
            u=user_id,
            e=endpoint,
        )
    ]


def test_cohere_sdk_v2_ranks_the_answering_document_first(gateway: Gateway) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    client = cohere.ClientV2(api_key=account.key, base_url=gateway.url)
    question, answer = QUESTIONS[0]
    reply = client.rerank(model=MODEL_NAME, query=question, documents=DOCUMENTS, top_n=3)
    assert len(reply.results) == 3
    assert KEYS[reply.results[0].index] == answer
    scores = [r.relevance_score for r in reply.results]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    ((tokens, cost, model),) = _usage(gateway, account.user_id, "rerank")
    assert model == MODEL_NAME and cost > 0
    assert reply.meta is not None and reply.meta.billed_units is not None
    assert reply.meta.billed_units.input_tokens == tokens


def test_cohere_sdk_v1_with_documents_returned(gateway: Gateway) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    client = cohere.Client(api_key=account.key, base_url=gateway.url)
    question, answer = QUESTIONS[2]
    reply = client.rerank(model=MODEL_NAME, query=question, documents=DOCUMENTS, return_documents=True)
    best = reply.results[0]
    assert KEYS[best.index] == answer
    assert best.document is not None and best.document.text == PASSAGES[answer]


def test_unknown_model_and_empty_documents_are_refused(gateway: Gateway) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    headers = {"Authorization": f"Bearer {account.key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as http:
        missing = http.post("/v1/rerank", json={"model": "nope", "query": "q", "documents": ["d"]})
        empty = http.post("/v1/rerank", json={"model": MODEL_NAME, "query": "q", "documents": []})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "documents"
    assert _usage(gateway, account.user_id, "rerank") == []


def test_score_in_vllm_wire_format(gateway: Gateway) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    headers = {"Authorization": f"Bearer {account.key}"}
    question, answer = QUESTIONS[3]
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=120) as http:
        reply = http.post("/v1/score", json={"model": MODEL_NAME, "text_1": question, "text_2": DOCUMENTS})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == list(range(len(DOCUMENTS)))
    best = max(body["data"], key=lambda d: d["score"])
    assert KEYS[best["index"]] == answer
    ((tokens, _, _),) = _usage(gateway, account.user_id, "score")
    assert tokens == body["usage"]["prompt_tokens"]


def test_collection_search_with_the_llm_ranker(gateway: Gateway) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    headers = {"Authorization": f"Bearer {account.key}"}
    question, answer = QUESTIONS[1]
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=120) as http:
        assert http.post("/v1/collections", json={"name": "llm-ranked"}).status_code == 201
        documents = [{"id": k, "text": PASSAGES[k]} for k in KEYS]
        written = http.post("/v1/collections/llm-ranked/documents", json={"documents": documents})
        assert written.status_code == 200, written.text
        reply = http.post(
            "/v1/collections/llm-ranked/search",
            json={"query": question, "top_k": 2, "ranking_options": {"ranker": "llm", "candidates": 5}},
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["data"][0]["document_id"] == answer
    assert len(_usage(gateway, account.user_id, "search.rerank")) == 1
