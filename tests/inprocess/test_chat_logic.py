"""Gateway logic of chat completions in process, with the fakes of tests/utils/fakes.py at the gRPC
boundary: response shapes, when the first event goes out, what costs a search, prompt fitting."""

from __future__ import annotations

import itertools
import json

import openai

from ragway.gateway.chat_completion.serving import TextEvents, Wire, _chunk, sse
from ragway.gateway.clients.model import ChoiceDelta, GenerationRequest, Sampling
from ragway.gateway.generation.service import Generation
from tests.inprocess.conftest import InProcess
from tests.utils.fakes import FAKE_MODEL


def sdk(inprocess: InProcess, headers: dict[str, str]) -> openai.OpenAI:
    key = headers["Authorization"].removeprefix("Bearer ")
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=key, http_client=inprocess.client, max_retries=0
    )


def test_the_sdk_parses_a_chat_completion(inprocess: InProcess) -> None:
    client = sdk(inprocess, inprocess.account())
    reply = client.chat.completions.create(model=FAKE_MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "Hello from the fake model"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 5


def test_the_first_stream_event_carries_the_role_and_the_first_token_together(inprocess: InProcess) -> None:
    headers = inprocess.account()
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with inprocess.client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        first_write = next(response.iter_raw()).decode()
    events = [json.loads(line[6:]) for line in first_write.split("\n\n") if line.startswith("data: {")]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[1]["choices"][0]["delta"] == {"content": "Hello"}


def test_a_wrong_model_costs_no_search(inprocess: InProcess) -> None:
    headers = inprocess.account()
    inprocess.client.post("/v1/collections", json={"name": "docs"}, headers=headers)
    reply = inprocess.client.post(
        "/v1/chat/completions",
        json={
            "model": "nope",
            "messages": [{"role": "user", "content": "q"}],
            "rag": {"collections": ["docs"]},
        },
        headers=headers,
    )
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"
    assert inprocess.retrieval.searches == []


def test_a_request_over_its_rate_limit_costs_no_search(inprocess: InProcess) -> None:
    headers = inprocess.account(rpm_limit=1)
    inprocess.client.post("/v1/collections", json={"name": "docs"}, headers=headers)
    body = {
        "model": FAKE_MODEL,
        "messages": [{"role": "user", "content": "q"}],
        "rag": {"collections": ["docs"]},
    }
    assert inprocess.client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    searched = len(inprocess.retrieval.searches)
    refused = inprocess.client.post("/v1/chat/completions", json=body, headers=headers)
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert len(inprocess.retrieval.searches) == searched


def test_each_rag_turn_extends_the_previous_prompt_token_for_token(inprocess: InProcess) -> None:
    headers = inprocess.account()
    inprocess.client.post("/v1/collections", json={"name": "docs"}, headers=headers)
    inprocess.client.post(
        "/v1/collections/docs/documents",
        json={"documents": [{"id": "tea", "text": "Green tea is steeped at 80 degrees for two minutes."}]},
        headers=headers,
    )
    conversation = None
    for question in ("How hot for green tea?", "And for how long?", "Thanks, anything else?"):
        body = {
            "model": FAKE_MODEL,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
            "rag": {"collections": ["docs"]},
            "store": True,
        }
        if conversation:
            body["conversation_id"] = conversation
        reply = inprocess.client.post("/v1/chat/completions", json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        conversation = reply.json()["conversation_id"]
    turns = [[(m.role, m.content) for m in r.chat.messages] for r in inprocess.model.requests]
    for before, after in itertools.pairwise(turns):
        # Everything turn N sent (its question wrapped with its sources), then its answer, leads turn N+1.
        assert after[: len(before)] == before
        assert after[len(before)] == ("assistant", "Hello from the fake model")
    # The history a user reads still shows the bare question.
    stored = inprocess.client.get(f"/v1/conversations/{conversation}", headers=headers).json()["messages"]
    assert next(m["content"] for m in stored if m["role"] == "user") == "How hot for green tea?"


def test_an_overflowing_history_is_trimmed_once_then_keeps_its_prefix(inprocess: InProcess) -> None:
    inprocess.model.max_model_len = 400  # fake tokens: one per word
    headers = inprocess.account()
    conversation = None
    long_question = "word " * 40
    for _ in range(12):
        body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": long_question}], "store": True}
        if conversation:
            body["conversation_id"] = conversation
        reply = inprocess.client.post("/v1/chat/completions", json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        conversation = reply.json()["conversation_id"]
    sizes = [len(r.chat.messages) for r in inprocess.model.requests]
    assert max(sizes) < 2 * 12 - 1, "history was trimmed"
    # Trimming happened in large steps: most turns extend the previous prompt instead of sliding.
    extended = sum(
        1
        for before, after in zip(inprocess.model.requests, inprocess.model.requests[1:], strict=False)
        if list(after.chat.messages)[: len(before.chat.messages)] == list(before.chat.messages)
    )
    assert extended >= 8


def test_the_text_event_fast_path_renders_exactly_the_full_chunk() -> None:
    """TextEvents fills a template per request; its events must parse to the same chunk."""
    gen = Generation(
        id="chatcmpl-1",
        endpoint="chat.completions",
        principal=None,  # type: ignore[arg-type]  # rendering never reads it
        model="m",
        request=GenerationRequest("chatcmpl-1", "", Sampling()),
        prompt_tokens=1,
        n=1,
        reservation=None,  # type: ignore[arg-type]
        conversation_id="conv_1",
    )
    for kind in ("chat.completion", "text_completion"):
        wire = Wire(kind, stream=True, include_usage=True, logprobs=False)
        events = TextEvents(gen, wire)
        for text in ["Hello", ' "quoted"\n\\', "日本 é \x00 \u2028"]:
            delta = ChoiceDelta(index=0, text=text, tokens=1)
            assert events.fits(delta)
            fast, full = events.event(delta), sse(_chunk(gen, wire, [delta]))
            assert fast.startswith("data: ") and fast.endswith("\n\n")
            assert json.loads(fast[6:]) == json.loads(full[6:])
