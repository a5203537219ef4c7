"""The Responses API's file_search tool in process, with the stated fakes of tests/utils/fakes.py at
the gRPC boundary (a word-overlap retrieval store, a model that answers a set text): item shapes,
include, event order, annotations, refusals, access and billing. Bodies and events are validated
against the Open Responses schema with OpenAI's file_search parts added (tests/gateway/schemas/)
and against the official SDK's types.
The same behaviours are proven against the real stack in tests/gateway/test_file_search.py."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.responses import Response as SdkResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from ragway.core.errors import InvalidArgument
from ragway.gateway.clients.retrieval import DocumentUpload
from ragway.gateway.responses.file_search import file_citations
from ragway.v1 import model_pb2
from tests.inprocess.conftest import InProcess
from tests.utils.fakes import FAKE_MODEL
from tests.utils.openresponses import check_event, check_response, parse_sse

FACT = "The capital of Veltravia is Quorvin, a harbour town on the Glass Sea."
OTHER = "Moonfish glow green at night and eat only silver algae."
QUESTION = "What is the capital of Veltravia?"
ANSWER = "The capital of Veltravia is Quorvin [1]."
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def check_sdk(body: dict[str, Any]) -> None:
    """Raise unless `body` (a response, or a stream event) is valid as the SDK's type. Usage is
    left to the Open Responses checks of test_responses_logic.py: the SDK also asks for
    cache_write_tokens, which vLLM's prefix cache does not report."""
    if body.get("object") == "response":
        SdkResponse.model_validate({**body, "usage": None})
    else:
        response = body.get("response")
        EVENTS.validate_python({**body, "response": {**response, "usage": None}} if response else body)


def new_store(inprocess: InProcess, headers: dict[str, str]) -> str:
    """A vector store holding FACT (veltravia.txt) and OTHER (moonfish.txt), written straight into
    the fake retrieval store as the ingestion worker would, with the file attributes it keeps."""
    store = inprocess.client.post("/v1/vector_stores", json={"name": "facts"}, headers=headers).json()
    (collection,) = [name for name in inprocess.retrieval.docs if name.endswith(f"__{store['id']}")]
    for file_id, filename, text, topic in (
        ("file-veltravia", "veltravia.txt", FACT, "geography"),
        ("file-moonfish", "moonfish.txt", OTHER, "nature"),
    ):
        inprocess.retrieval.docs[collection][file_id] = DocumentUpload(
            file_id, text, "text/plain", {"file_id": file_id, "filename": filename, "topic": topic}
        )
    return str(store["id"])


def tool(store_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": "file_search", "vector_store_ids": [store_id], **fields}


def create(inprocess: InProcess, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    reply = inprocess.client.post(
        "/v1/responses", json={"model": FAKE_MODEL, "input": QUESTION, **fields}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    check_sdk(body)
    check_response(body)
    return body


@pytest.fixture
def grounded(inprocess: InProcess) -> tuple[InProcess, dict[str, str], str]:
    inprocess.model.answer = ANSWER
    headers = inprocess.account()
    return inprocess, headers, new_store(inprocess, headers)


def test_the_call_comes_first_with_results_only_when_included(
    grounded: tuple[InProcess, dict[str, str], str],
) -> None:
    inprocess, headers, store_id = grounded
    body = create(inprocess, headers, tools=[tool(store_id)], include=["file_search_call.results"])
    call, message = body["output"]
    assert call["type"] == "file_search_call" and call["status"] == "completed"
    assert call["id"] == "fs_" + body["id"].removeprefix("resp_")
    assert call["queries"] == [QUESTION]
    best = call["results"][0]
    assert (best["file_id"], best["filename"], best["text"]) == ("file-veltravia", "veltravia.txt", FACT)
    assert best["attributes"] == {"topic": "geography"} and 0 < best["score"] <= 1
    assert message["type"] == "message" and message["content"][0]["text"] == ANSWER
    # The sources reached the model inside the question, numbered as the answer cites them.
    question = inprocess.model.requests[-1].chat.messages[-1].content
    assert "[1] (document: veltravia.txt)" in question and FACT in question
    assert best["vector_store_id"] == store_id

    plain = create(inprocess, headers, tools=[tool(store_id)])
    assert plain["output"][0]["results"] is None and plain["output"][0]["queries"] == [QUESTION]


def test_a_cited_source_is_a_file_citation_at_its_marker(
    grounded: tuple[InProcess, dict[str, str], str],
) -> None:
    inprocess, headers, store_id = grounded
    body = create(inprocess, headers, tools=[tool(store_id)])
    text = body["output"][1]["content"][0]
    assert text["annotations"] == [
        {
            "type": "file_citation",
            "file_id": "file-veltravia",
            "filename": "veltravia.txt",
            "index": ANSWER.index("[1]"),
        }
    ]
    client = openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=headers["Authorization"].removeprefix("Bearer "),
        http_client=inprocess.client,
        max_retries=0,
    )
    assert client.responses.retrieve(body["id"]).output_text == ANSWER
    stored = inprocess.client.get(f"/v1/responses/{body['id']}", headers=headers).json()
    assert stored["output"] == body["output"]


def test_an_answer_without_markers_cites_the_sources_it_quotes(
    grounded: tuple[InProcess, dict[str, str], str],
) -> None:
    inprocess, headers, store_id = grounded
    inprocess.model.answer = "Well. The capital of Veltravia is Quorvin, a harbour town. Fish glow."
    body = create(inprocess, headers, tools=[tool(store_id)])
    (annotation,) = body["output"][1]["content"][0]["annotations"]
    assert annotation["file_id"] == "file-veltravia"
    assert annotation["index"] == inprocess.model.answer.index(" Fish")  # the quoting sentence's end


def test_an_answer_citing_no_source_has_no_annotations(
    grounded: tuple[InProcess, dict[str, str], str],
) -> None:
    inprocess, headers, store_id = grounded
    inprocess.model.answer = "Quorvin, and [7] is no source."
    body = create(inprocess, headers, tools=[tool(store_id)])
    assert body["output"][1]["content"][0]["annotations"] == []


def test_file_citations_follow_every_marker() -> None:
    sources = [
        {"file_id": "file-a", "filename": "a.txt", "text": "Alpha reactors are cooled by liquid sodium."},
        {"file_id": "file-b", "filename": "b.txt", "text": "Bravo bridges carry freight trains."},
        {"file_id": "file-a", "filename": "a.txt", "text": "Alpha reactors run at low pressure."},
    ]
    text = "A [1]. B [2, 3]. Both [1-3]. None [9]."
    found = [(a["file_id"], a["index"]) for a in file_citations(text, sources)]
    assert found == [
        ("file-a", text.index("[1]")),
        ("file-b", text.index("[2, 3]")),
        ("file-a", text.index("[2, 3]")),
        ("file-a", text.index("[1-3]")),
        ("file-b", text.index("[1-3]")),
    ]
    assert file_citations(text, []) == []
    # No marker: a sentence repeating five words of a source in a row cites it, at its end.
    quoting = "Bravo bridges carry freight trains daily! Reactors are cooled by sodium."
    assert [(a["file_id"], a["index"]) for a in file_citations(quoting, sources)] == [
        ("file-b", quoting.index("!") + 1)
    ]


def test_streamed_search_events_come_in_order_before_the_message(
    grounded: tuple[InProcess, dict[str, str], str],
) -> None:
    inprocess, headers, store_id = grounded
    body = {
        "model": FAKE_MODEL,
        "input": QUESTION,
        "stream": True,
        "tools": [tool(store_id)],
        "include": ["file_search_call.results"],
    }
    with inprocess.client.stream("POST", "/v1/responses", json=body, headers=headers) as response:
        assert response.status_code == 200
        events = parse_sse(response.read().decode())
    for event in events:
        check_sdk(event)
        check_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(ANSWER.split()),
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    call_id = "fs_" + events[0]["response"]["id"].removeprefix("resp_")
    assert events[2]["item"] == {
        "type": "file_search_call",
        "id": call_id,
        "status": "in_progress",
        "queries": [],
        "results": None,
    }
    assert all(e["item_id"] == call_id and e["output_index"] == 0 for e in events[3:6])
    call = events[6]["item"]
    assert call["status"] == "completed" and call["results"][0]["file_id"] == "file-veltravia"
    assert events[7]["output_index"] == 1
    added = events[kinds.index("response.output_text.annotation.added")]
    assert added["annotation"]["file_id"] == "file-veltravia" and added["annotation_index"] == 0
    final = events[-1]["response"]
    check_sdk(final)
    assert final["output"][0] == call
    assert final["output"][1]["content"][0]["annotations"] == [added["annotation"]]


def test_the_query_embedding_is_billed_like_a_vector_store_search(
    grounded: tuple[InProcess, dict[str, str], str],
) -> None:
    inprocess, headers, store_id = grounded
    create(inprocess, headers, tools=[tool(store_id)])
    usage = inprocess.client.get("/v1/usage", headers=headers).json()["data"]
    by_model = {row["model"]: row for row in usage}
    assert by_model["all-MiniLM-L6-v2"]["requests"] == 1
    assert by_model["all-MiniLM-L6-v2"]["prompt_tokens"] > 0
    assert by_model[FAKE_MODEL]["requests"] == 1


def test_tool_choice_none_searches_nothing(grounded: tuple[InProcess, dict[str, str], str]) -> None:
    inprocess, headers, store_id = grounded
    body = create(inprocess, headers, tools=[tool(store_id)], tool_choice="none")
    assert [item["type"] for item in body["output"]] == ["message"]
    assert inprocess.retrieval.searches == []
    assert body["tools"] == [
        {
            "type": "file_search",
            "vector_store_ids": [store_id],
            "max_num_results": 5,
            "filters": None,
            "ranking_options": {"ranker": "auto", "score_threshold": 0.0},
        }
    ]


def test_filters_and_max_num_results_narrow_the_search(
    grounded: tuple[InProcess, dict[str, str], str],
) -> None:
    inprocess, headers, store_id = grounded
    # ne is evaluated in the gateway (the fake store does not filter).
    only_nature = {"type": "ne", "key": "topic", "value": "geography"}
    body = create(
        inprocess,
        headers,
        tools=[tool(store_id, filters=only_nature, max_num_results=1)],
        include=["file_search_call.results"],
    )
    assert [r["filename"] for r in body["output"][0]["results"]] == ["moonfish.txt"]
    assert body["tools"][0]["filters"] == only_nature and body["tools"][0]["max_num_results"] == 1


def test_another_users_store_is_not_found(grounded: tuple[InProcess, dict[str, str], str]) -> None:
    inprocess, _, store_id = grounded
    reply = inprocess.client.post(
        "/v1/responses",
        json={"model": FAKE_MODEL, "input": QUESTION, "tools": [tool(store_id)]},
        headers=inprocess.account(),
    )
    assert reply.status_code == 404, reply.text
    assert reply.json()["error"]["param"] == "tools.0.vector_store_ids"
    assert inprocess.model.requests == [] and inprocess.retrieval.searches == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"rewrite_query": True}, "tools.0.rewrite_query"),
        ({"name": "search"}, "tools.0.name"),
        ({"max_num_results": 51}, "tools.0.max_num_results"),
        ({"ranking_options": {"ranker": "auto", "hybrid": 1}}, "tools.0.ranking_options.hybrid"),
        ({"filters": {"type": "eq", "key": "topic"}}, "tools.0.filters"),
        ({"vector_store_ids": []}, "tools.0.vector_store_ids"),
    ],
)
def test_a_bad_tool_field_is_a_400_naming_it(
    grounded: tuple[InProcess, dict[str, str], str], fields: dict[str, Any], param: str
) -> None:
    inprocess, headers, store_id = grounded
    reply = inprocess.client.post(
        "/v1/responses",
        json={"model": FAKE_MODEL, "input": QUESTION, "tools": [tool(store_id, **fields)]},
        headers=headers,
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param, error
    assert param.split(".")[-1] in error["message"]
    assert inprocess.model.requests == [] and inprocess.retrieval.searches == []


def test_one_file_search_tool_per_request(grounded: tuple[InProcess, dict[str, str], str]) -> None:
    inprocess, headers, store_id = grounded
    reply = inprocess.client.post(
        "/v1/responses",
        json={"model": FAKE_MODEL, "input": QUESTION, "tools": [tool(store_id), tool(store_id)]},
        headers=headers,
    )
    assert reply.status_code == 400 and "one file_search tool" in reply.json()["error"]["message"]


def test_function_tools_still_reach_the_model_beside_file_search(
    grounded: tuple[InProcess, dict[str, str], str],
) -> None:
    inprocess, headers, store_id = grounded
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    body = create(inprocess, headers, tools=[tool(store_id), weather], tool_choice="required")
    sent = inprocess.model.requests[-1].chat
    assert [t.name for t in sent.tools] == ["get_weather"]
    # The search is the required call, so the model may answer in text.
    assert sent.tool_choice.mode == model_pb2.TOOL_CHOICE_MODE_AUTO
    assert [t["type"] for t in body["tools"]] == ["file_search", "function"]


def test_hybrid_search_weights_are_the_fusion_weights_and_are_echoed(
    grounded: tuple[InProcess, dict[str, str], str],
) -> None:
    inprocess, headers, store_id = grounded
    weights = {"embedding_weight": 0.25, "text_weight": 3.0}
    ranking = {"ranker": "auto", "hybrid_search": weights}
    body = create(inprocess, headers, tools=[tool(store_id, ranking_options=ranking)])
    sent = inprocess.retrieval.search_settings[-1]
    assert (sent.mode, sent.fusion, sent.dense_weight, sent.sparse_weight) == ("hybrid", "rrf", 0.25, 3.0)
    assert body["tools"][0]["ranking_options"] == {
        "ranker": "auto",
        "score_threshold": 0.0,
        "hybrid_search": weights,
    }
    create(inprocess, headers, tools=[tool(store_id)])
    default = inprocess.retrieval.search_settings[-1]
    assert (default.mode, default.dense_weight, default.sparse_weight) == (None, 1.0, 1.0)


@pytest.mark.parametrize(
    ("ranking", "words"),
    [
        ({"hybrid_search": {"embedding_weight": 0, "text_weight": 0}}, "cannot both be 0"),
        ({"hybrid_search": {"embedding_weight": -1, "text_weight": 1}}, "embedding_weight"),
        ({"hybrid_search": {"embedding_weight": 1}}, "text_weight"),
        (
            {"hybrid_search": {"embedding_weight": 1, "text_weight": 1}, "score_threshold": 0.5},
            "score_threshold",
        ),
    ],
)
def test_bad_hybrid_search_is_a_400_naming_it(
    grounded: tuple[InProcess, dict[str, str], str], ranking: dict[str, Any], words: str
) -> None:
    inprocess, headers, store_id = grounded
    reply = inprocess.client.post(
        "/v1/responses",
        json={"model": FAKE_MODEL, "input": QUESTION, "tools": [tool(store_id, ranking_options=ranking)]},
        headers=headers,
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"].startswith("tools.0.ranking_options") and words in error["message"], error
    assert inprocess.retrieval.searches == [] and inprocess.model.requests == []


def test_a_fusion_that_cannot_weigh_is_refused_naming_hybrid_search(
    grounded: tuple[InProcess, dict[str, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retrieval service refuses weights its store's fusion would drop (field `hybrid`, as
    Qdrant's DBSF does); the Responses API names OpenAI's field for it."""
    inprocess, headers, store_id = grounded

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise InvalidArgument("the store's DBSF fusion weighs both searches equally", field="hybrid")

    monkeypatch.setattr(inprocess.retrieval, "search", refuse)
    ranking = {"hybrid_search": {"embedding_weight": 1, "text_weight": 2}}
    reply = inprocess.client.post(
        "/v1/responses",
        json={"model": FAKE_MODEL, "input": QUESTION, "tools": [tool(store_id, ranking_options=ranking)]},
        headers=headers,
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "tools.0.ranking_options.hybrid_search"


def test_every_result_names_its_vector_store(grounded: tuple[InProcess, dict[str, str], str]) -> None:
    inprocess, headers, store_id = grounded
    second = new_store(inprocess, headers)
    body = create(
        inprocess,
        headers,
        tools=[{"type": "file_search", "vector_store_ids": [store_id, second]}],
        include=["file_search_call.results"],
    )
    results = body["output"][0]["results"]
    assert {r["vector_store_id"] for r in results} == {store_id, second}


SOURCES = [
    {"file_id": "file-veltravia", "filename": "veltravia.txt", "text": FACT},
    {"file_id": "file-moonfish", "filename": "moonfish.txt", "text": OTHER},
]


def test_a_named_file_is_cited_just_past_its_name() -> None:
    answer = "See moonfish.txt: they glow. Veltravia.txt says otherwise [1]."
    moonfish = answer.index("moonfish.txt") + len("moonfish.txt")
    veltravia = answer.index("Veltravia.txt") + len("Veltravia.txt")  # names match in any case
    assert file_citations(answer, SOURCES) == [
        {"type": "file_citation", "file_id": "file-moonfish", "filename": "moonfish.txt", "index": moonfish},
        {
            "type": "file_citation",
            "file_id": "file-veltravia",
            "filename": "veltravia.txt",
            "index": veltravia,
        },
        {
            "type": "file_citation",
            "file_id": "file-veltravia",
            "filename": "veltravia.txt",
            "index": answer.index("[1]"),
        },
    ]
    # A name inside a longer one is not a mention of it.
    assert file_citations("old-moonfish.txt and moonfish.txt2", SOURCES) == []


def test_an_answer_that_refers_to_no_source_gets_no_annotation() -> None:
    assert file_citations("I don't know.", SOURCES) == []
    assert file_citations("Fish are animals [7].", SOURCES) == []  # no source 7
