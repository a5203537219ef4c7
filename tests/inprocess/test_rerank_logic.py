"""The LLM reranker and /v1/rerank, /v2/rerank, /v1/score over HTTP, in process: the model client
is the stated fake of tests/utils/fakes.py, whose Score follows a stated rule (word overlap, or
one a test sets). What the fast tier proves: the shapes, the order, the refusals naming the field,
what reaches the retrieval service, the time budget, and the bill. That the real model ranks an
answering passage first is proven in tests/model/test_score.py and tests/gateway/test_rerank.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragway.gateway.clients.retrieval import DocumentUpload
from tests.inprocess.conftest import InProcess, inprocess_app
from tests.utils.fakes import FAKE_MODEL

DOCS = [
    "Paris is the capital of France.",
    "The moonfish lives in deep water.",
    {"text": "France borders Spain, and its capital Paris lies on the Seine.", "id": "d2"},
]


def _param(reply: Any, status: int = 400) -> str:
    assert reply.status_code == status, reply.text
    return str(reply.json()["error"]["param"])


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_rerank_orders_documents_by_the_model_score(inprocess: InProcess, path: str) -> None:
    headers = inprocess.account()
    reply = inprocess.client.post(
        path,
        json={"model": FAKE_MODEL, "query": "capital of France", "documents": DOCS, "top_n": 2},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [r["index"] for r in body["results"]] == [0, 2]  # top_n cuts; the moonfish is last
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert all("document" not in r for r in body["results"])
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    assert body["meta"]["billed_units"]["input_tokens"] == body["usage"]["prompt_tokens"]
    (query, passages, _, timeout) = inprocess.model.scored[-1]
    assert query == "capital of France" and passages[2] == DOCS[2]["text"]  # type: ignore[index]
    assert timeout is not None


def test_rerank_returns_documents_when_asked(inprocess: InProcess) -> None:
    headers = inprocess.account()
    body = inprocess.client.post(
        "/v1/rerank",
        json={"model": FAKE_MODEL, "query": "capital of France", "documents": DOCS, "return_documents": True},
        headers=headers,
    ).json()
    documents = {r["index"]: r["document"] for r in body["results"]}
    assert documents[0] == {"text": DOCS[0]} and documents[2] == DOCS[2]


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"documents": []}, "documents", 400),
        ({"documents": ["x"] * 101}, "documents", 400),
        ({"model": "no-such-model"}, "model", 404),
        ({"query": ""}, "query", 400),
        ({"top_n": 0}, "top_n", 400),
        ({"documents": [{"title": "no text"}]}, "documents", 400),
    ],
)
def test_bad_rerank_requests_name_the_field(
    inprocess: InProcess, body: dict[str, Any], field: str, status: int
) -> None:
    headers = inprocess.account()
    request = {"model": FAKE_MODEL, "query": "capital", "documents": ["a"], **body}
    reply = inprocess.client.post("/v1/rerank", json=request, headers=headers)
    assert _param(reply, status).startswith(field)
    if status == 404:
        assert reply.json()["error"]["code"] == "model_not_found"
    assert inprocess.model.scored == []


def test_rerank_and_score_are_billed_to_the_model(inprocess: InProcess) -> None:
    headers = inprocess.account()
    rerank = inprocess.client.post(
        "/v1/rerank", json={"model": FAKE_MODEL, "query": "capital", "documents": DOCS}, headers=headers
    ).json()
    score = inprocess.client.post(
        "/v1/score", json={"model": FAKE_MODEL, "text_1": "capital", "text_2": ["a b", "c"]}, headers=headers
    ).json()
    (day,) = inprocess.client.get("/v1/usage", headers=headers).json()["data"]
    assert day["model"] == FAKE_MODEL and day["requests"] == 2
    assert day["prompt_tokens"] == rerank["usage"]["prompt_tokens"] + score["usage"]["prompt_tokens"]
    assert day["cost"] > 0


def test_score_one_query_against_many_and_pairwise(inprocess: InProcess) -> None:
    headers = inprocess.account()
    many = inprocess.client.post(
        "/v1/score",
        json={"model": FAKE_MODEL, "text_1": "capital of France", "text_2": [DOCS[1], DOCS[0]]},
        headers=headers,
    ).json()
    assert many["object"] == "list" and [d["index"] for d in many["data"]] == [0, 1]
    assert many["data"][1]["score"] > many["data"][0]["score"]
    pairs = inprocess.client.post(
        "/v1/score",
        json={"model": FAKE_MODEL, "text_1": ["moonfish water", "capital"], "text_2": [DOCS[1], DOCS[1]]},
        headers=headers,
    ).json()
    assert pairs["data"][0]["score"] > pairs["data"][1]["score"]
    assert sorted(q for q, *_ in inprocess.model.scored[-2:]) == ["capital", "moonfish water"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text_2": []}, "text_2"),
        ({"text_2": ["x"] * 101}, "text_2"),
        ({"text_1": ["a", "b"], "text_2": ["x", "y", "z"]}, "text_1"),
        ({"text_1": " "}, "text_1"),
    ],
)
def test_bad_score_requests_name_the_field(inprocess: InProcess, body: dict[str, Any], field: str) -> None:
    headers = inprocess.account()
    request = {"model": FAKE_MODEL, "text_1": "q", "text_2": ["a"], **body}
    assert _param(inprocess.client.post("/v1/score", json=request, headers=headers)) == field


# -- ranker "llm" in search --------------------------------------------------------------------------


def _collection(inprocess: InProcess, headers: dict[str, str]) -> None:
    assert inprocess.client.post("/v1/collections", json={"name": "docs"}, headers=headers).status_code == 201
    documents = [
        {"id": "a", "text": "quota quota quota exhausted"},
        {"id": "b", "text": "Error E4031 means the disk quota is exhausted"},
        {"id": "c", "text": "moonfish"},
    ]
    written = inprocess.client.post(
        "/v1/collections/docs/documents", json={"documents": documents}, headers=headers
    )
    assert written.status_code == 200, written.text


def _prefer_error_codes(query: str, passage: str) -> float:
    return 0.0 if "E4031" in passage else -5.0


def test_llm_ranker_reorders_the_first_stage_candidates(inprocess: InProcess) -> None:
    headers = inprocess.account()
    _collection(inprocess, headers)
    inprocess.model.score_rule = _prefer_error_codes
    reply = inprocess.client.post(
        "/v1/collections/docs/search",
        json={"query": "quota exhausted", "top_k": 1, "ranking_options": {"ranker": "llm", "candidates": 3}},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    (hit,) = reply.json()["data"]
    assert hit["document_id"] == "b" and hit["score"] == pytest.approx(1.0)
    sent = inprocess.retrieval.search_settings[-1]
    assert sent.ranker == "none"  # the gateway reranks; the retrieval service ranks nothing itself
    query, passages, _, timeout = inprocess.model.scored[-1]
    assert query == "quota exhausted" and len(passages) == 3 and timeout == 10.0
    usage = {row["model"]: row for row in inprocess.client.get("/v1/usage", headers=headers).json()["data"]}
    assert usage[FAKE_MODEL]["prompt_tokens"] > 0


def test_llm_ranker_past_its_budget_keeps_the_first_stage_order(inprocess: InProcess) -> None:
    headers = inprocess.account()
    _collection(inprocess, headers)
    inprocess.model.score_rule = _prefer_error_codes
    inprocess.model.score_too_slow = True
    reply = inprocess.client.post(
        "/v1/collections/docs/search",
        json={"query": "quota exhausted", "top_k": 1, "ranking_options": {"ranker": "llm", "budget_ms": 50}},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    assert [h["document_id"] for h in reply.json()["data"]] == ["a"]  # word overlap's best
    assert inprocess.model.scored[-1][3] == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("ranking", "field"),
    [
        ({"ranker": "llm", "candidates": 101}, "ranking_options.candidates"),
        ({"ranker": "llm", "budget_ms": 0}, "ranking_options.budget_ms"),
        ({"ranker": "gpt-rerank"}, "ranking_options.ranker"),
    ],
)
def test_bad_llm_ranking_options_name_the_field(
    inprocess: InProcess, ranking: dict[str, Any], field: str
) -> None:
    headers = inprocess.account()
    _collection(inprocess, headers)
    reply = inprocess.client.post(
        "/v1/collections/docs/search", json={"query": "quota", "ranking_options": ranking}, headers=headers
    )
    assert _param(reply) == field
    if ranking["ranker"] == "gpt-rerank":
        assert "llm" in reply.json()["error"]["message"]  # the list of what is available


def test_llm_ranker_in_chat_rag_grounds_on_the_reranked_chunk(inprocess: InProcess) -> None:
    headers = inprocess.account()
    _collection(inprocess, headers)
    inprocess.model.score_rule = _prefer_error_codes
    reply = inprocess.client.post(
        "/v1/chat/completions",
        json={
            "model": FAKE_MODEL,
            "messages": [{"role": "user", "content": "quota exhausted"}],
            "rag": {"collections": ["docs"], "top_k": 1, "ranking_options": {"ranker": "llm"}},
        },
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    prompt = "".join(m.content for m in inprocess.model.requests[-1].chat.messages)
    assert "E4031" in prompt and "quota quota quota" not in prompt
    assert inprocess.model.scored[-1][0] == "quota exhausted"


def test_llm_ranker_in_vector_store_search(inprocess: InProcess) -> None:
    headers = inprocess.account()
    store = inprocess.client.post("/v1/vector_stores", json={"name": "s"}, headers=headers).json()
    (collection,) = [n for n in inprocess.retrieval.docs if n.endswith(f"__{store['id']}")]
    for file_id, text in (
        ("file-a", "quota quota quota exhausted"),
        ("file-b", "E4031: the disk quota is exhausted"),
    ):
        inprocess.retrieval.docs[collection][file_id] = DocumentUpload(
            file_id, text, "text/plain", {"file_id": file_id, "filename": f"{file_id}.txt"}
        )
    inprocess.model.score_rule = _prefer_error_codes
    reply = inprocess.client.post(
        f"/v1/vector_stores/{store['id']}/search",
        json={"query": "quota exhausted", "max_num_results": 1, "ranking_options": {"ranker": "llm"}},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    assert [r["file_id"] for r in reply.json()["data"]] == ["file-b"]


@pytest.fixture(params=["never", "gpu", "always"])
def auto_mode(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[InProcess]:
    monkeypatch.setenv("RAGWAY_RERANK_AUTO", request.param)
    yield from inprocess_app(tmp_path, None)


@pytest.mark.parametrize(
    ("device", "cross_encoder"), [("cuda", ""), ("cpu", ""), ("cuda", "ms-marco-MiniLM")]
)
def test_auto_ranker_is_the_llm_only_where_the_operator_says(
    auto_mode: InProcess, request: pytest.FixtureRequest, device: str, cross_encoder: str
) -> None:
    """RAGWAY_RERANK_AUTO: "never" (default) keeps auto at the first stage; "gpu" reranks with the
    LLM where the scoring model runs on GPUs, "always" everywhere; a configured cross-encoder stays
    auto's in every mode."""
    inprocess = auto_mode
    mode = request.node.callspec.params["auto_mode"]
    reranked = not cross_encoder and (mode == "always" or (mode == "gpu" and device == "cuda"))
    inprocess.model.device = device
    inprocess.retrieval.reranker = cross_encoder
    headers = inprocess.account()
    _collection(inprocess, headers)
    inprocess.model.score_rule = _prefer_error_codes
    reply = inprocess.client.post(
        "/v1/collections/docs/search",
        json={"query": "quota exhausted", "top_k": 1, "ranking_options": {"ranker": "auto"}},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    assert bool(inprocess.model.scored) == reranked
    assert inprocess.retrieval.search_settings[-1].ranker == ("none" if reranked else "auto")
    if reranked:
        assert reply.json()["data"][0]["document_id"] == "b"


def test_readyz_lists_the_rankers(inprocess: InProcess) -> None:
    details = inprocess.client.get("/readyz").json()["details"]
    assert details["rankers"] == ["auto", "none", "llm"]
    assert details["retrieval"]["rankers"] == ["auto", "none"]
