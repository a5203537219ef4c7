"""One search path (rag.search): vector store search, collections search, the chat `rag` option
and the Responses file_search tool all run `rag.search.search`, with one filter language that
reaches the store whole (in process; the retrieval client is the stated fake of
tests/utils/fakes.py, which evaluates the Filter it is sent as a store does). That every backend
evaluates those filters natively is proven in tests/retrieval/test_contract.py."""

from __future__ import annotations

from typing import Any

import pytest

from ragway.gateway.clients.retrieval import Condition, DocumentUpload, Filter
from ragway.gateway.rag import filters, search
from tests.inprocess.conftest import InProcess
from tests.utils.fakes import FAKE_MODEL

DOCS = {
    "en2021": ("Harbour towns of the Glass Sea trade in salt.", {"lang": "en", "year": 2021}),
    "de2019": ("Harbour towns of the Glass Sea trade in amber.", {"lang": "de", "year": 2019}),
    "fr2024": ("Harbour towns of the Glass Sea trade in wine.", {"lang": "fr", "year": 2024}),
    "none": ("Harbour towns of the Glass Sea trade in fish.", {}),
}
QUERY = "harbour towns glass sea trade"


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every search the one search function ran: the filter field the request named, and its
    filter in the one language."""
    seen: list[tuple[str, Any]] = []
    parse = filters.parse

    def spy(spec: Any, field: str = "filters") -> Filter | None:
        seen.append((field, spec))
        return parse(spec, field)

    monkeypatch.setattr(search.filters, "parse", spy)
    return seen


def _vector_store(inprocess: InProcess, headers: dict[str, str]) -> str:
    """A vector store whose files are written straight into the fake store, as ingestion would."""
    store = inprocess.client.post("/v1/vector_stores", json={"name": "towns"}, headers=headers).json()
    (collection,) = [name for name in inprocess.retrieval.docs if name.endswith(f"__{store['id']}")]
    for doc_id, (text, attributes) in DOCS.items():
        metadata = {"file_id": doc_id, "filename": f"{doc_id}.txt", **attributes}
        inprocess.retrieval.docs[collection][doc_id] = DocumentUpload(doc_id, text, "text/plain", metadata)
    return str(store["id"])


def _collection(inprocess: InProcess, headers: dict[str, str]) -> None:
    assert (
        inprocess.client.post("/v1/collections", json={"name": "towns"}, headers=headers).status_code == 201
    )
    documents = [{"id": i, "text": text, "metadata": meta} for i, (text, meta) in DOCS.items()]
    written = inprocess.client.post(
        "/v1/collections/towns/documents", json={"documents": documents}, headers=headers
    )
    assert written.status_code == 200, written.text


def test_vector_store_or_filter_and_collections_json_filter_share_one_path(
    inprocess: InProcess, searches: list[tuple[str, Any]]
) -> None:
    headers = inprocess.account()
    store_id = _vector_store(inprocess, headers)
    _collection(inprocess, headers)
    # OpenAI's filter: (lang == en or year >= 2024) and lang != de.
    either = {
        "type": "and",
        "filters": [
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "lang", "value": "en"},
                    {"type": "gte", "key": "year", "value": 2024},
                ],
            },
            {"type": "ne", "key": "lang", "value": "de"},
        ],
    }
    found = inprocess.client.post(
        f"/v1/vector_stores/{store_id}/search",
        json={"query": QUERY, "filters": either, "max_num_results": 10},
        headers=headers,
    )
    assert found.status_code == 200, found.text
    assert {r["file_id"] for r in found.json()["data"]} == {"en2021", "fr2024"}
    sent = Filter(
        must=(Filter(should=(Condition("lang", equals="en"), Condition("year", range={"gte": 2024.0}))),),
        must_not=(Condition("lang", equals="de"),),
    )
    assert inprocess.retrieval.filters[-1] == sent  # whole: nothing is left for the gateway to check

    # The collections API's JSON form, translated into the same language.
    found = inprocess.client.post(
        "/v1/collections/towns/search",
        json={"query": QUERY, "top_k": 10, "filter": {"lang": {"in": ["en", "de"]}, "year": {"gte": 2020}}},
        headers=headers,
    )
    assert found.status_code == 200, found.text
    assert {c["document_id"] for c in found.json()["data"]} == {"en2021"}
    assert inprocess.retrieval.filters[-1] == Filter(
        must=(Condition("lang", any_of=["en", "de"]), Condition("year", range={"gte": 2020.0}))
    )

    # The chat rag option and the file_search tool run the same function.
    chat = inprocess.client.post(
        "/v1/chat/completions",
        json={
            "model": FAKE_MODEL,
            "messages": [{"role": "user", "content": QUERY}],
            "rag": {"collections": ["towns"], "filter": {"lang": "fr"}},
            "max_tokens": 4,
        },
        headers=headers,
    )
    assert chat.status_code == 200, chat.text
    assert {c["document_id"] for c in chat.json()["citations"]} <= {"fr2024"}
    assert inprocess.retrieval.filters[-1] == Filter(must=(Condition("lang", equals="fr"),))
    tool = {
        "type": "file_search",
        "vector_store_ids": [store_id],
        "filters": {"type": "nin", "key": "lang", "value": ["en", "fr"]},
    }
    response = inprocess.client.post(
        "/v1/responses",
        json={"model": FAKE_MODEL, "input": QUERY, "tools": [tool], "include": ["file_search_call.results"]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    (call,) = [item for item in response.json()["output"] if item["type"] == "file_search_call"]
    assert {r["file_id"] for r in call["results"]} == {"de2019", "none"}  # nin keeps a missing key

    assert [field for field, _ in searches] == ["filters", "filter", "filter", "filters"]
    assert searches[1][1] == {
        "type": "and",
        "filters": [
            {"type": "in", "key": "lang", "value": ["en", "de"]},
            {"type": "gte", "key": "year", "value": 2020},
        ],
    }


def test_bad_filters_are_400s_naming_the_field_on_every_route(inprocess: InProcess) -> None:
    headers = inprocess.account()
    store_id = _vector_store(inprocess, headers)
    _collection(inprocess, headers)
    bad_or = {"type": "or", "filters": [{"type": "eq", "key": "bad key", "value": 1}]}
    reply = inprocess.client.post(
        f"/v1/vector_stores/{store_id}/search", json={"query": QUERY, "filters": bad_or}, headers=headers
    )
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "filters", reply.text
    reply = inprocess.client.post(
        "/v1/collections/towns/search",
        json={"query": QUERY, "filter": {"year": {"gte": "x"}}},
        headers=headers,
    )
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "filter", reply.text
    assert inprocess.retrieval.searches == []
