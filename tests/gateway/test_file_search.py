"""The Responses API's file_search tool through the official openai SDK, unchanged, against the real
stack: the real engine, the real retrieval service (embedded Qdrant, the real embedder) and the
gateway's own ingestion of uploaded files. The answer to QUESTION is in FACT alone, a made-up
fact the model cannot know; the fast logic of the same tool is in
tests/inprocess/test_file_search_logic.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai
import pytest

from ragway.gateway.responses.file_search import file_citations
from tests.conftest import MODEL_NAME, Gateway
from tests.utils.db import rows
from tests.utils.factories import Account, make_account
from tests.utils.openresponses import check_event, check_response, parse_sse

FACT = "Veltravia is a small island country in the Glass Sea. The capital of Veltravia is Quorvin."
OTHER = "The moonfish of Lake Ardel glows green at night and eats only silver algae."
QUESTION = "What is the capital of Veltravia?"


@dataclass(frozen=True)
class Store:
    id: str
    fact_file_id: str


@pytest.fixture(scope="module")
def account(gateway: Gateway) -> Account:
    return make_account(gateway.url, gateway.admin_key)


@pytest.fixture(scope="module")
def store(account: Account) -> Store:
    client = account.openai()
    vector_store = client.vector_stores.create(name="facts")
    files = {}
    for name, text in (("veltravia.txt", FACT), ("moonfish.txt", OTHER)):
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=vector_store.id, file=(name, text.encode())
        )
        assert done.status == "completed", done.last_error
        files[name] = done.id
    return Store(vector_store.id, files["veltravia.txt"])


def file_search(store: Store) -> dict[str, object]:
    return {"type": "file_search", "vector_store_ids": [store.id]}


def test_an_answer_only_the_file_holds_cites_that_file(account: Account, store: Store) -> None:
    client = account.openai()
    reply = client.responses.create(
        model=MODEL_NAME,
        input=QUESTION,
        tools=[file_search(store)],  # type: ignore[list-item]
        include=["file_search_call.results"],
        temperature=0,
        max_output_tokens=40,
    )
    call, message = reply.output
    assert call.type == "file_search_call" and call.status == "completed"
    assert call.queries == [QUESTION]
    assert call.results is not None
    best = call.results[0]
    assert (best.file_id, best.filename) == (store.fact_file_id, "veltravia.txt")
    assert best.text == FACT and best.score is not None and 0 < best.score <= 1
    assert message.type == "message" and "Quorvin" in reply.output_text
    annotations = message.content[0].annotations  # type: ignore[union-attr]
    assert annotations, f"the answer cites nothing: {reply.output_text!r}"
    first = annotations[0]
    assert first.type == "file_citation"
    assert (first.file_id, first.filename) == (store.fact_file_id, "veltravia.txt")
    # At its [1] marker, or (the model seldom writes one) at the end of the sentence quoting it.
    assert 0 < first.index <= len(reply.output_text) and "Quorvin" in reply.output_text[: first.index]

    # Without the tool the model does not know it: the file is what answered.
    ungrounded = client.responses.create(
        model=MODEL_NAME, input=QUESTION, temperature=0, max_output_tokens=40
    )
    assert "Quorvin" not in ungrounded.output_text


def test_without_include_the_call_has_no_results(account: Account, store: Store) -> None:
    reply = account.openai().responses.create(
        model=MODEL_NAME,
        input=QUESTION,
        tools=[file_search(store)],  # type: ignore[list-item]
        temperature=0,
        max_output_tokens=8,
        store=False,
    )
    assert reply.output[0].type == "file_search_call" and reply.output[0].results is None


def test_the_stream_reports_the_search_before_the_answer(account: Account, store: Store) -> None:
    client = account.openai()
    with client.responses.stream(
        model=MODEL_NAME,
        input=QUESTION,
        tools=[file_search(store)],  # type: ignore[list-item]
        temperature=0,
        max_output_tokens=40,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    search = kinds[2:7]
    assert search == [
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
    ]
    assert kinds[7] == "response.output_item.added" and kinds[-1] == "response.completed"
    assert kinds.index("response.output_text.annotation.added") < kinds.index("response.output_text.done")
    assert [item.type for item in final.output] == ["file_search_call", "message"]
    assert "Quorvin" in final.output_text
    cited = final.output[1].content[0].annotations  # type: ignore[union-attr]
    assert cited and cited[0].file_id == store.fact_file_id  # type: ignore[union-attr]


def test_another_users_store_is_not_found(gateway: Gateway, store: Store) -> None:
    stranger = make_account(gateway.url, gateway.admin_key).openai()
    with pytest.raises(openai.NotFoundError) as refused:
        stranger.responses.create(model=MODEL_NAME, input=QUESTION, tools=[file_search(store)])  # type: ignore[list-item]
    assert refused.value.body["param"] == "tools.0.vector_store_ids"  # type: ignore[index]


def test_an_unknown_tool_field_is_a_400_naming_it(account: Account, store: Store) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        account.openai().responses.create(
            model=MODEL_NAME,
            input=QUESTION,
            tools=[{**file_search(store), "rewrite_query": True}],  # type: ignore[list-item]
        )
    assert refused.value.body["param"] == "tools.0.rewrite_query"  # type: ignore[index]


def test_the_query_embedding_is_billed_as_a_vector_store_search(
    gateway: Gateway, account: Account, store: Store
) -> None:
    def searches() -> list[tuple[str, int, int, str]]:
        return rows(  # type: ignore[return-value]
            gateway.database_url,
            "SELECT model, prompt_tokens, cost, status FROM usage_records"
            " WHERE user_id = :u AND endpoint = 'vector_stores.search' ORDER BY id",
            u=account.user_id,
        )

    before = searches()
    account.openai().responses.create(
        model=MODEL_NAME,
        input=QUESTION,
        tools=[file_search(store)],  # type: ignore[list-item]
        max_output_tokens=4,
        store=False,
    )
    after = searches()
    assert len(after) == len(before) + 1
    model, tokens, cost, status = after[-1]
    assert model == "all-MiniLM-L6-v2" and 5 <= tokens <= 16 and cost > 0 and status == "ok"


def _raw(account: Account, **body: Any) -> dict[str, Any]:
    with account.http() as http:
        reply = http.post("/v1/responses", json={"model": MODEL_NAME, **body})
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    check_response(data)
    return data


def test_the_body_and_events_meet_the_schema_with_every_result_naming_its_store(
    account: Account, store: Store
) -> None:
    ranking = {"ranker": "auto", "hybrid_search": {"embedding_weight": 1.0, "text_weight": 2.0}}
    fields: dict[str, Any] = {
        "input": QUESTION,
        "tools": [{**file_search(store), "ranking_options": ranking}],
        "include": ["file_search_call.results"],
        "max_output_tokens": 8,
    }
    body = _raw(account, **fields)
    assert body["tools"][0]["ranking_options"] == {**ranking, "score_threshold": 0.0}
    results = body["output"][0]["results"]
    assert results and {r["vector_store_id"] for r in results} == {store.id}
    with account.http() as http:
        stored = http.get(f"/v1/responses/{body['id']}").json()
    check_response(stored)
    assert stored["output"][0]["results"] == results
    with (
        account.http() as http,
        http.stream("POST", "/v1/responses", json={"model": MODEL_NAME, "stream": True, **fields}) as reply,
    ):
        events = parse_sse(reply.read().decode())
    for event in events:
        check_event(event)
    assert events[-1]["response"]["output"][0]["results"][0]["vector_store_id"] == store.id


@pytest.mark.parametrize(
    ("weights", "mode"),
    [
        ({"embedding_weight": 1, "text_weight": 0}, "dense"),
        ({"embedding_weight": 0, "text_weight": 1}, "sparse"),
    ],
)
def test_hybrid_search_weights_reach_the_fusion(
    account: Account, store: Store, weights: dict[str, float], mode: str
) -> None:
    """A weight of 0 leaves one list of the fusion: the results are that retriever's alone, as the
    vector store search route finds them with `mode`."""
    body = _raw(
        account,
        input=QUESTION,
        tools=[{**file_search(store), "ranking_options": {"ranker": "none", "hybrid_search": weights}}],
        include=["file_search_call.results"],
        max_output_tokens=1,
    )
    found = [(r["file_id"], r["score"]) for r in body["output"][0]["results"]]
    with account.http() as http:
        alone = http.post(
            f"/v1/vector_stores/{store.id}/search",
            json={
                "query": QUESTION,
                "mode": mode,
                "max_num_results": 5,
                "ranking_options": {"ranker": "none"},
            },
        ).json()["data"]
    assert found == [(r["file_id"], r["score"]) for r in alone]


def test_the_annotation_builder_on_a_real_search(account: Account, store: Store) -> None:
    """The model's wording is not deterministic, so the builder is tested on the real results with
    a stated answer: a marker and a file's name each cite the file the search returned."""
    reply = account.openai().responses.create(
        model=MODEL_NAME,
        input=QUESTION,
        tools=[file_search(store)],  # type: ignore[list-item]
        include=["file_search_call.results"],
        max_output_tokens=1,
    )
    results = [r.model_dump() for r in reply.output[0].results or []]  # type: ignore[union-attr]
    first, second = results[0], results[1]
    answer = f"The capital is Quorvin [1]. {second['filename']} is about something else."
    assert file_citations(answer, results) == [
        {"type": "file_citation", "file_id": first["file_id"], "filename": first["filename"], "index": 23},
        {
            "type": "file_citation",
            "file_id": second["file_id"],
            "filename": second["filename"],
            "index": 28 + len(second["filename"]),
        },
    ]
    assert file_citations("I do not know.", results) == []


def test_annotations_point_at_retrieved_files_and_none_are_invented(account: Account, store: Store) -> None:
    client = account.openai()
    reply = client.responses.create(
        model=MODEL_NAME,
        input=QUESTION,
        tools=[file_search(store)],  # type: ignore[list-item]
        include=["file_search_call.results"],
        temperature=0,
        max_output_tokens=40,
    )
    retrieved = {r.file_id for r in reply.output[0].results or []}  # type: ignore[union-attr]
    for annotation in reply.output[1].content[0].annotations:  # type: ignore[union-attr]
        assert annotation.file_id in retrieved and 0 <= annotation.index <= len(reply.output_text)  # type: ignore[union-attr]
    # One token can hold no [n] marker, no file name and no quotation: nothing to cite.
    short = client.responses.create(
        model=MODEL_NAME,
        input=QUESTION,
        tools=[file_search(store)],
        max_output_tokens=1,  # type: ignore[list-item]
    )
    assert short.output[1].content[0].annotations == []  # type: ignore[union-attr]
