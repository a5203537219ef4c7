"""The Responses API and the tokenizer endpoints through the official openai SDK, against the real
model service (one vLLM engine). Every body and streamed event is validated against the Open
Responses schemas vendored in tests/gateway/schemas/."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import MODEL_NAME, Gateway
from tests.inprocess.test_responses_logic import REFUSED, REFUSED_VALUES
from tests.utils.factories import Account, make_account
from tests.utils.openresponses import check_event, check_item, check_response, parse_sse

QUESTION = "What is the capital of France?"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": WEATHER_SCHEMA,
}


@pytest.fixture(scope="module")
def account(gateway: Gateway) -> Account:
    return make_account(gateway.url, gateway.admin_key)


def post(account: Account, **body: Any) -> dict[str, Any]:
    """POST /v1/responses as raw JSON, validated against the specification."""
    with account.http() as http:
        reply = http.post("/v1/responses", json={"model": MODEL_NAME, **body})
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    check_response(data)
    return data


def stream(account: Account, **body: Any) -> list[dict[str, Any]]:
    """POST /v1/responses with stream: true; the events, each validated, numbered in order."""
    with (
        account.http() as http,
        http.stream("POST", "/v1/responses", json={"model": MODEL_NAME, "stream": True, **body}) as reply,
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(reply.read().decode())
    for event in events:
        check_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_text_input_and_output_text(account: Account) -> None:
    reply = account.openai().responses.create(
        model=MODEL_NAME, input=QUESTION, temperature=0, max_output_tokens=30
    )
    assert "Paris" in reply.output_text
    assert reply.status == "completed" and reply.id.startswith("resp_")
    assert reply.usage is not None and reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    check_response(post(account, input=QUESTION, temperature=0, max_output_tokens=30))


def test_instructions_reach_the_model(account: Account) -> None:
    instructions = "You are a pirate. Answer every question like a pirate would, in one sentence."
    instructed = post(account, input="Hi", instructions=instructions, max_output_tokens=16, store=False)
    assert instructed["instructions"] == instructions
    # The prompt is exactly the system message plus the question, as the tokenizer renders them
    # (the model's template puts a default system prompt in when none is given).
    messages = [{"role": "system", "content": instructions}, {"role": "user", "content": "Hi"}]
    with account.http() as http:
        expected = http.post("/tokenize", json={"model": MODEL_NAME, "messages": messages}).json()["count"]
    assert instructed["usage"]["input_tokens"] == expected


def test_stream_events_come_in_order_and_match_the_specification(account: Account) -> None:
    events = stream(account, input=QUESTION, temperature=0, max_output_tokens=30)
    kinds = [e["type"] for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 1
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert "Paris" in text
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == text and final["usage"]["output_tokens"] > 0


def test_the_sdk_stream_helper(account: Account) -> None:
    client = account.openai()
    with client.responses.stream(model=MODEL_NAME, input=QUESTION, temperature=0, max_output_tokens=30) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == final.output_text and "Paris" in final.output_text
    assert final.status == "completed"


def test_previous_response_id_three_turns_deep(account: Account, gateway: Gateway) -> None:
    client = account.openai()
    turns = ["My name is Alice and I live in Paris.", "What is my name?", "Where do I live?"]
    # The same instructions every turn (longer than a KV-cache block), as a static system prompt.
    instructions = "Answer briefly. Remember what the user tells you about themselves. " * 12
    replies = []
    previous = None
    for text in turns:
        reply = client.responses.create(
            model=MODEL_NAME,
            input=text,
            instructions=instructions,
            temperature=0,
            max_output_tokens=24,
            previous_response_id=previous,
        )
        replies.append(reply)
        previous = reply.id
    third = replies[-1]
    assert third.previous_response_id == replies[1].id
    # The third prompt holds turns 1-2: it is longer by their text, and their tokens come from
    # vLLM's prefix cache because the history is rendered the same way every turn.
    assert third.usage is not None and replies[1].usage is not None
    assert third.usage.input_tokens > replies[1].usage.input_tokens > replies[0].usage.input_tokens  # type: ignore[union-attr]
    assert third.usage.input_tokens_details.cached_tokens > 0
    conversation = third.model_dump()["conversation"]["id"]
    with account.http() as http:
        view = http.get(f"/v1/conversations/{conversation}").json()
    assert [m["content"] for m in view["messages"] if m["role"] == "user"] == turns
    assert [m["role"] for m in view["messages"]] == ["user", "assistant"] * 3
    # Another user's response id is a 404, continuing it or reading it.
    stranger = make_account(gateway.url, gateway.admin_key).openai()
    with pytest.raises(openai.NotFoundError):
        stranger.responses.create(model=MODEL_NAME, input="Hi", previous_response_id=third.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(third.id)


def test_get_delete_and_input_items(account: Account) -> None:
    made = post(
        account,
        input=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": QUESTION}],
        temperature=0,
        max_output_tokens=20,
        metadata={"case": "get"},
    )
    client = account.openai()
    got = client.responses.retrieve(made["id"])
    assert got.output_text == "".join(c["text"] for c in made["output"][0]["content"])
    with account.http() as http:
        raw = http.get(f"/v1/responses/{made['id']}").json()
        check_response(raw)
        assert raw["metadata"] == {"case": "get"} and raw["usage"] == made["usage"]
        items = http.get(f"/v1/responses/{made['id']}/input_items", params={"order": "asc"}).json()
    for item in items["data"]:
        check_item(item)
    assert [(i["role"], i["content"][0]["text"]) for i in items["data"]] == [
        ("system", "Be brief."),
        ("user", QUESTION),
    ]
    sdk_items = client.responses.input_items.list(made["id"])
    assert [i.role for i in sdk_items.data] == ["user", "system"]  # type: ignore[union-attr]
    client.responses.delete(made["id"])
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made["id"])


def test_an_unstored_response_is_not_retrievable(account: Account) -> None:
    client = account.openai()
    reply = client.responses.create(model=MODEL_NAME, input="Hi", max_output_tokens=16, store=False)
    assert reply.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)


def _call(reply: Any) -> Any:
    calls = [item for item in reply.output if item.type == "function_call"]
    assert len(calls) == 1, reply.output
    call = calls[0]
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)
    return call


def test_a_function_tool_round_trip(account: Account) -> None:
    client = account.openai()
    first = client.responses.create(
        model=MODEL_NAME,
        input="What is the weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_output_tokens=100,
    )
    call = _call(first)
    result = {"type": "function_call_output", "call_id": call.call_id, "output": '{"temperature_c": 21}'}
    # Stateful: previous_response_id carries the question and the call.
    final = client.responses.create(
        model=MODEL_NAME,
        previous_response_id=first.id,
        input=[result],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        temperature=0,
        max_output_tokens=60,
    )
    assert final.status == "completed" and final.output_text.strip()
    assert [i.type for i in final.output] == ["message"]
    # Stateless: the client sends the whole exchange back, as the SDK's docs show.
    again = client.responses.create(
        model=MODEL_NAME,
        input=[{"role": "user", "content": "What is the weather in Paris?"}, *first.output, result],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        temperature=0,
        max_output_tokens=60,
        store=False,
    )
    assert again.output_text.strip()


def test_a_streamed_function_tool_round_trip(account: Account) -> None:
    client = account.openai()
    with client.responses.stream(
        model=MODEL_NAME,
        input="What is the weather in Rome?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_output_tokens=100,
    ) as s:
        kinds = [e.type for e in s]
        first = s.get_final_response()
    call = _call(first)
    assert "response.function_call_arguments.delta" in kinds
    assert kinds.index("response.function_call_arguments.done") < kinds.index("response.completed")
    events = stream(
        account,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temperature_c": 25}'}],
        tools=[WEATHER],
        tool_choice="none",
        temperature=0,
        max_output_tokens=60,
    )
    assert events[-1]["type"] == "response.completed"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta").strip()
    # The raw stream of a call validates too.
    raw = stream(
        account,
        input="Weather in Oslo?",
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=100,
        store=False,
    )
    assert [e["type"] for e in raw if e["type"].startswith("response.function_call_arguments")][-1] == (
        "response.function_call_arguments.done"
    )


def test_text_format_json_schema(account: Account) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "country": {"type": "string", "maxLength": 20},
        },
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    reply = account.openai().responses.create(
        model=MODEL_NAME,
        input="Name a city and its country as JSON.",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}},
        temperature=0,
        max_output_tokens=60,
        store=False,
    )
    jsonschema.validate(json.loads(reply.output_text), schema)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_parameters_are_a_400_naming_them(account: Account, name: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        account.openai().responses.create(model=MODEL_NAME, input="Hi", **{name: REFUSED[name]})  # type: ignore[call-overload]
    assert info.value.body["param"] == name  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(REFUSED_VALUES))
def test_refused_values_are_a_400_naming_the_parameter(account: Account, name: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        fields = {"input": "Hi", name: REFUSED_VALUES[name]}
        account.openai().responses.create(model=MODEL_NAME, **fields)  # type: ignore[call-overload]
    assert info.value.body["param"].split(".")[0] == name  # type: ignore[index]


def test_a_response_is_metered(account: Account, gateway: Gateway) -> None:
    payer = make_account(gateway.url, gateway.admin_key, credits=10.0)
    with payer.http() as http:
        before = http.get("/v1/me").json()["credits"]
        post(payer, input="Hi", max_output_tokens=16, store=False)
        assert http.get("/v1/me").json()["credits"] < before
        rows = http.get("/v1/usage").json()["data"]
    assert sum(r["requests"] for r in rows) == 1


def test_tokenize_and_detokenize_round_trip(account: Account, gateway: Gateway) -> None:
    text = "Hello, world! Tokenizers split words."
    with account.http() as http:
        before = http.get("/v1/me").json()["credits"]
        tokens = http.post(
            "/tokenize", json={"model": MODEL_NAME, "prompt": text, "add_special_tokens": False}
        )
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        assert body["count"] == len(body["tokens"]) > 3 and body["max_model_len"] > 0
        back = http.post("/detokenize", json={"model": MODEL_NAME, "tokens": body["tokens"]}).json()
        assert back == {"prompt": text}
        chat = http.post("/tokenize", json={"messages": [{"role": "user", "content": text}]}).json()
        assert chat["count"] > body["count"]  # the chat template's role markers and assistant prefix
        assert http.get("/v1/me").json()["credits"] == before  # billed as nothing
    assert httpx.post(f"{gateway.url}/tokenize", json={"prompt": text}).status_code == 401
    assert httpx.post(f"{gateway.url}/detokenize", json={"tokens": [1, 2]}).status_code == 401


def test_tokenize_counts_the_prompt_chat_sends(account: Account) -> None:
    """A system message after the first user turn is rendered first by chat (generation puts the
    system prompt before the conversation); /tokenize counts the same prompt, not the order sent."""
    messages = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Another one?"},
    ]
    with account.http() as http:
        counted = http.post("/tokenize", json={"model": MODEL_NAME, "messages": messages}).json()["count"]
        sent = http.post(
            "/v1/chat/completions", json={"model": MODEL_NAME, "messages": messages, "max_tokens": 1}
        ).json()["usage"]["prompt_tokens"]
    assert counted == sent
