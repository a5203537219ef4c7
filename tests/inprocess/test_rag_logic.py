"""RAG logic of the gateway in process (stated fakes at the gRPC boundary): what a follow-up
searches for, and which sources an answer cited."""

from __future__ import annotations

from ragway.gateway.generation.grounding import cited_numbers
from ragway.gateway.rag.query import follow_up_query
from tests.inprocess.conftest import InProcess
from tests.utils.fakes import FAKE_MODEL


def test_markers_are_read_as_models_write_them() -> None:
    answer = "Quorvin [1]. It glows [2, 4] and [5-7][9]; not [x], [ ], or 2023 in [the year]."
    assert cited_numbers(answer) == {1, 2, 4, 5, 6, 7, 9}


def test_a_follow_up_is_searched_with_the_question_before_it() -> None:
    assert follow_up_query(["Tell me about tarnel bread.", "When is it eaten?"]) == (
        "Tell me about tarnel bread.\nWhen is it eaten?"
    )
    assert follow_up_query(["Only one question"]) == "Only one question"


def _setup(inprocess: InProcess) -> dict[str, str]:
    headers = inprocess.account()
    inprocess.client.post("/v1/collections", json={"name": "docs"}, headers=headers)
    documents = [
        {"id": "tarnel", "text": "Tarnel bread is eaten during the Festival of Lanterns."},
        {"id": "moonfish", "text": "The moonfish eats silver algae."},
    ]
    inprocess.client.post("/v1/collections/docs/documents", json={"documents": documents}, headers=headers)
    return headers


def test_turn_two_searches_with_what_turn_one_established(inprocess: InProcess) -> None:
    headers = _setup(inprocess)
    conversation = None
    for question in ("Tell me about tarnel bread.", "When is it eaten?"):
        body = {
            "model": FAKE_MODEL,
            "messages": [{"role": "user", "content": question}],
            "rag": {"collections": ["docs"]},
            "store": True,
            **({"conversation_id": conversation} if conversation else {}),
        }
        conversation = inprocess.client.post("/v1/chat/completions", json=body, headers=headers).json()[
            "conversation_id"
        ]
    assert inprocess.retrieval.searches[-1][1] == "Tell me about tarnel bread.\nWhen is it eaten?"


def test_citations_say_which_sources_the_answer_cited(inprocess: InProcess) -> None:
    headers = _setup(inprocess)
    inprocess.model.answer = "It is eaten at the Festival of Lanterns [1]."
    body = {
        "model": FAKE_MODEL,
        "messages": [{"role": "user", "content": "When is tarnel bread eaten?"}],
        "rag": {"collections": ["docs"], "top_k": 2},
    }
    citations = inprocess.client.post("/v1/chat/completions", json=body, headers=headers).json()["citations"]
    assert [(c["document_id"], c["cited"]) for c in citations] == [("tarnel", True), ("moonfish", False)]
