"""The Responses API's gateway logic in process, with the stated fakes of tests/utils/fakes.py at
the gRPC boundary: event order, item mapping, stored state, refusals. Every body and event is
validated against the Open Responses schemas. The same behaviours are proven against the real
engine in tests/gateway/test_responses.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai.types.responses.response_create_params import ResponseCreateParamsBase

from ragway.v1 import model_pb2
from tests.inprocess.conftest import InProcess
from tests.utils.fakes import FAKE_MODEL
from tests.utils.openresponses import check_event, check_item, check_response, parse_sse

TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
Request = model_pb2.GenerateRequest


def sdk(inprocess: InProcess, headers: dict[str, str]) -> openai.OpenAI:
    key = headers["Authorization"].removeprefix("Bearer ")
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=key, http_client=inprocess.client, max_retries=0
    )


def create(inprocess: InProcess, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    reply = inprocess.client.post(
        "/v1/responses", json={"model": FAKE_MODEL, "input": "Hi", **fields}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    check_response(body)
    return body


def stream_events(inprocess: InProcess, headers: dict[str, str], **fields: Any) -> list[dict[str, Any]]:
    body = {"model": FAKE_MODEL, "input": "Hi", "stream": True, **fields}
    with inprocess.client.stream("POST", "/v1/responses", json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.read().decode())
    for event in events:
        check_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_the_sdk_reads_output_text(inprocess: InProcess) -> None:
    reply = sdk(inprocess, inprocess.account()).responses.create(model=FAKE_MODEL, input="Hi")
    assert reply.output_text == "Hello from the fake model"
    assert reply.status == "completed" and reply.object == "response"
    assert reply.usage is not None and reply.usage.output_tokens == 5
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    assert reply.usage.input_tokens_details.cached_tokens == 0
    assert reply.usage.output_tokens_details.reasoning_tokens == 0


def test_instructions_are_a_system_message_first(inprocess: InProcess) -> None:
    body = create(inprocess, inprocess.account(), instructions="Answer in French.")
    sent = inprocess.model.requests[-1].chat.messages
    assert [(m.role, m.content) for m in sent] == [("system", "Answer in French."), ("user", "Hi")]
    assert body["instructions"] == "Answer in French."


def test_text_events_come_in_the_specified_order(inprocess: InProcess) -> None:
    events = stream_events(inprocess, inprocess.account())
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == (
        "Hello from the fake model"
    )
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["usage"]["output_tokens"] == 5
    assert final["output"][0]["id"] == events[2]["item"]["id"] == events[4]["item_id"]


def test_the_sdk_stream_helper_builds_the_final_response(inprocess: InProcess) -> None:
    client = sdk(inprocess, inprocess.account())
    with client.responses.stream(model=FAKE_MODEL, input="Hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello from the fake model"


def test_a_function_call_is_an_output_item(inprocess: InProcess) -> None:
    inprocess.model.tool_call = ("get_weather", '{"city": "Paris"}')
    body = create(inprocess, inprocess.account(), tools=[TOOL])
    assert [i["type"] for i in body["output"]] == ["function_call"]
    call = body["output"][0]
    assert (call["call_id"], call["name"], call["arguments"]) == (
        "call_fake0",
        "get_weather",
        '{"city": "Paris"}',
    )
    assert body["status"] == "completed"
    sent = inprocess.model.requests[-1]
    assert [t.name for t in sent.chat.tools] == ["get_weather"] and sent.chat.tools[0].strict


def test_a_streamed_function_call_has_argument_deltas(inprocess: InProcess) -> None:
    inprocess.model.tool_call = ("get_weather", '{"city": "Paris"}')
    events = stream_events(inprocess, inprocess.account(), tools=[TOOL])
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2]["item"]["type"] == "function_call" and events[2]["item"]["name"] == "get_weather"
    assert events[5]["arguments"] == '{"city": "Paris"}'
    assert events[-1]["response"]["output"] == [events[6]["item"]]


def test_call_and_output_items_become_assistant_and_tool_turns(inprocess: InProcess) -> None:
    items = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Lyon"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": [{"type": "input_text", "text": "20C"}],
        },
    ]
    create(inprocess, inprocess.account(), input=items, tools=[TOOL], store=False)
    sent = inprocess.model.requests[-1].chat.messages
    assert [m.role for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [c.id for c in sent[1].tool_calls] == ["call_1", "call_2"]
    assert [(m.tool_call_id, m.content) for m in sent[2:]] == [("call_1", "18C"), ("call_2", "20C")]


def test_previous_response_id_carries_the_history_three_turns_deep(inprocess: InProcess) -> None:
    client = sdk(inprocess, inprocess.account())
    first = client.responses.create(model=FAKE_MODEL, input="one")
    second = client.responses.create(model=FAKE_MODEL, input="two", previous_response_id=first.id)
    third = client.responses.create(model=FAKE_MODEL, input="three", previous_response_id=second.id)
    sent = inprocess.model.requests[-1].chat.messages
    assert [m.content for m in sent if m.role == "user"] == ["one", "two", "three"]
    assert third.previous_response_id == second.id
    conversation = third.model_dump()["conversation"]["id"]
    assert conversation == first.model_dump()["conversation"]["id"]


def test_another_users_response_id_is_not_found(inprocess: InProcess) -> None:
    mine = create(inprocess, inprocess.account())
    other = inprocess.account()
    reply = inprocess.client.post(
        "/v1/responses",
        json={"model": FAKE_MODEL, "input": "Hi", "previous_response_id": mine["id"]},
        headers=other,
    )
    assert reply.status_code == 404 and reply.json()["error"]["param"] == "previous_response_id"
    assert inprocess.client.get(f"/v1/responses/{mine['id']}", headers=other).status_code == 404
    assert inprocess.client.delete(f"/v1/responses/{mine['id']}", headers=other).status_code == 404


def test_continuing_an_older_response_branches_without_mixing(inprocess: InProcess) -> None:
    headers = inprocess.account()
    first = create(inprocess, headers, input="one")
    create(inprocess, headers, input="two", previous_response_id=first["id"])
    branch = create(inprocess, headers, input="other two", previous_response_id=first["id"])
    sent = inprocess.model.requests[-1].chat.messages
    assert [m.content for m in sent if m.role == "user"] == ["one", "other two"]
    assert branch["conversation"]["id"] != first["conversation"]["id"]
    view = inprocess.client.get(f"/v1/conversations/{branch['conversation']['id']}", headers=headers).json()
    assert [m["content"] for m in view["messages"] if m["role"] == "user"] == ["one", "other two"]
    # The original id still names one response, in its own conversation.
    assert (
        inprocess.client.get(f"/v1/responses/{first['id']}", headers=headers).json()["conversation"]
        == (first["conversation"])
    )


def test_an_unstored_continuation_of_an_older_response_leaves_no_conversation(inprocess: InProcess) -> None:
    headers = inprocess.account()
    first = create(inprocess, headers, input="one")
    create(inprocess, headers, input="two", previous_response_id=first["id"])
    before = inprocess.client.get("/v1/conversations", headers=headers).json()["data"]
    unstored = create(inprocess, headers, input="other two", previous_response_id=first["id"], store=False)
    sent = inprocess.model.requests[-1].chat.messages
    assert [m.content for m in sent if m.role == "user"] == ["one", "other two"], "the branch's history"
    assert unstored["conversation"] is None
    assert inprocess.client.get("/v1/conversations", headers=headers).json()["data"] == before
    view = inprocess.client.get(f"/v1/conversations/{first['conversation']['id']}", headers=headers).json()
    assert [m["content"] for m in view["messages"] if m["role"] == "user"] == ["one", "two"]


def test_get_rebuilds_the_response_and_input_items_list_what_was_sent(inprocess: InProcess) -> None:
    headers = inprocess.account()
    made = create(
        inprocess,
        headers,
        instructions="Be brief.",
        input=[{"role": "developer", "content": "No emoji."}, {"role": "user", "content": "Hi"}],
        metadata={"team": "a"},
        temperature=0.5,
    )
    got = inprocess.client.get(f"/v1/responses/{made['id']}", headers=headers).json()
    check_response(got)
    for name in ("id", "output", "usage", "instructions", "metadata", "temperature", "model", "status"):
        assert got[name] == made[name], name
    items = inprocess.client.get(
        f"/v1/responses/{made['id']}/input_items", params={"order": "asc"}, headers=headers
    ).json()
    for item in items["data"]:
        check_item(item)
    assert [(i["role"], i["content"][0]["text"]) for i in items["data"]] == [
        ("system", "No emoji."),
        ("user", "Hi"),
    ]
    newest_first = inprocess.client.get(
        f"/v1/responses/{made['id']}/input_items", params={"limit": 1}, headers=headers
    ).json()
    assert newest_first["data"][0]["role"] == "user" and newest_first["has_more"]


def test_delete_removes_the_response(inprocess: InProcess) -> None:
    headers = inprocess.account()
    made = create(inprocess, headers)
    deleted = inprocess.client.delete(f"/v1/responses/{made['id']}", headers=headers)
    assert deleted.json() == {"id": made["id"], "object": "response", "deleted": True}
    assert inprocess.client.get(f"/v1/responses/{made['id']}", headers=headers).status_code == 404


def test_an_unstored_response_cannot_be_retrieved_or_continued(inprocess: InProcess) -> None:
    headers = inprocess.account()
    made = create(inprocess, headers, store=False)
    assert made["store"] is False and made["conversation"] is None
    assert inprocess.client.get(f"/v1/responses/{made['id']}", headers=headers).status_code == 404
    reply = inprocess.client.post(
        "/v1/responses",
        json={"model": FAKE_MODEL, "input": "Hi", "previous_response_id": made["id"]},
        headers=headers,
    )
    assert reply.status_code == 404


def test_json_schema_format_constrains_the_output(inprocess: InProcess) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = create(
        inprocess,
        inprocess.account(),
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}},
    )
    assert json.loads(inprocess.model.requests[-1].sampling.json_schema) == schema
    assert body["text"]["format"]["schema"] == schema


# -- every SDK parameter honoured or refused by name -----------------------------------------------

HONOURED: dict[str, tuple[Any, Callable[[Request], bool]]] = {
    "input": ("Hi there", lambda r: r.chat.messages[-1].content == "Hi there"),
    "model": (FAKE_MODEL, lambda r: True),
    "instructions": ("Be brief.", lambda r: r.chat.messages[0].content == "Be brief."),
    "max_output_tokens": (16, lambda r: r.sampling.max_tokens == 16),
    "temperature": (0.3, lambda r: abs(r.sampling.temperature - 0.3) < 1e-6),
    "top_p": (0.9, lambda r: abs(r.sampling.top_p - 0.9) < 1e-6),
    "top_logprobs": (2, lambda r: r.sampling.logprobs == 2),
    "include": (["message.output_text.logprobs"], lambda r: r.sampling.HasField("logprobs")),
    "tools": ([TOOL], lambda r: [t.name for t in r.chat.tools] == ["get_weather"]),
    "tool_choice": ("required", lambda r: r.chat.tool_choice.mode == model_pb2.TOOL_CHOICE_MODE_REQUIRED),
    "parallel_tool_calls": (
        False,
        lambda r: r.chat.HasField("parallel_tool_calls") and not r.chat.parallel_tool_calls,
    ),
    "text": ({"format": {"type": "json_object"}}, lambda r: r.sampling.json_object),
    # Not sampling changes; each is asserted by its own test.
    "store": (False, lambda r: True),  # test_an_unstored_response_cannot_be_retrieved_or_continued
    "previous_response_id": (None, lambda r: True),  # test_previous_response_id_carries_the_history...
    "conversation": (None, lambda r: True),  # test_conversation_continues_a_chat_conversation
    "metadata": ({"team": "a"}, lambda r: True),  # test_get_rebuilds_the_response...
    "truncation": ("auto", lambda r: True),  # ragway trims the oldest history to fit: that is auto
    "stream_options": ({"include_obfuscation": False}, lambda r: True),  # no padding is what ragway does
    "user": ("user-1", lambda r: True),  # an end-user id: accepted, logged
    "safety_identifier": ("hash-1", lambda r: True),
    "prompt_cache_key": ("team-a", lambda r: True),  # a hint: vLLM's prefix cache needs none
    "prompt_cache_retention": ("in_memory", lambda r: True),  # the only retention vLLM's cache has
    "service_tier": ("default", lambda r: True),  # the one tier there is
}
REFUSED: dict[str, Any] = {
    "background": True,
    "background_options": {"x": 1},
    "access_programs": ["p"],
    "context_management": [{"type": "compaction"}],
    "image": {"size": "1024x1024"},
    "max_tool_calls": 2,
    "moderation": {"model": "omni-moderation-latest"},
    "prompt": {"id": "pmpt_1"},
    "prompt_cache_options": {"ttl": "24h"},
    "reasoning": {"effort": "high"},
}
REFUSED_VALUES: dict[str, Any] = {
    "include": ["code_interpreter_call.outputs"],
    "truncation": "disabled",
    "service_tier": "priority",
    "stream_options": {"include_obfuscation": True},
    "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
    "text": {"format": {"type": "json_schema", "name": "x"}, "verbosity": "low"},
    "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/cat.png"}]}],
}


def test_every_sdk_parameter_is_classified() -> None:
    sdk_fields = set(ResponseCreateParamsBase.__annotations__)
    assert sdk_fields == set(HONOURED) | set(REFUSED), "a new OpenAI parameter: honour it or refuse it"


def _post(inprocess: InProcess, headers: dict[str, str], **fields: Any) -> Any:
    body = {"model": FAKE_MODEL, "input": "Hi", **fields}
    if "tool_choice" in fields or "parallel_tool_calls" in fields:
        body.setdefault("tools", [TOOL])
    if "top_logprobs" in fields:
        body["include"] = ["message.output_text.logprobs"]
    return inprocess.client.post("/v1/responses", json=body, headers=headers)


@pytest.mark.parametrize("name", sorted(HONOURED))
def test_honoured_parameters_reach_the_model_service(inprocess: InProcess, name: str) -> None:
    value, shows = HONOURED[name]
    reply = _post(inprocess, inprocess.account(), **{name: value})
    assert reply.status_code == 200, reply.text
    check_response(reply.json())
    assert shows(inprocess.model.requests[-1]), f"{name} did not reach the model service"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_parameters_are_a_400_naming_them(inprocess: InProcess, name: str) -> None:
    reply = _post(inprocess, inprocess.account(), **{name: REFUSED[name]})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == name and name in error["message"]
    assert inprocess.model.requests == []


@pytest.mark.parametrize("name", sorted(REFUSED_VALUES))
def test_values_ragway_cannot_honour_are_a_400_naming_the_parameter(inprocess: InProcess, name: str) -> None:
    reply = _post(inprocess, inprocess.account(), **{name: REFUSED_VALUES[name]})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"].split(".")[0] == name
    assert inprocess.model.requests == []


def test_a_tool_of_another_type_is_refused_naming_its_type(inprocess: InProcess) -> None:
    tools = [TOOL, {"type": "web_search"}]
    reply = _post(inprocess, inprocess.account(), tools=tools)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "tools.1.type" and "'web_search'" in error["message"]


def test_an_unknown_parameter_is_a_400_naming_it(inprocess: InProcess) -> None:
    reply = _post(inprocess, inprocess.account(), temprature=0.5)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "temprature"


def test_conversation_continues_a_chat_conversation(inprocess: InProcess) -> None:
    headers = inprocess.account()
    chat = inprocess.client.post(
        "/v1/chat/completions",
        json={"model": FAKE_MODEL, "messages": [{"role": "user", "content": "from chat"}], "store": True},
        headers=headers,
    ).json()
    body = create(inprocess, headers, input="from responses", conversation=chat["conversation_id"])
    sent = inprocess.model.requests[-1].chat.messages
    assert [m.content for m in sent if m.role == "user"] == ["from chat", "from responses"]
    assert body["conversation"]["id"] == chat["conversation_id"]
    # ... and another user's conversation is not found.
    other = _post(inprocess, inprocess.account(), conversation=chat["conversation_id"])
    assert other.status_code == 404


def test_a_response_is_billed_under_its_own_endpoint(inprocess: InProcess) -> None:
    headers = inprocess.account(credits=100.0)
    create(inprocess, headers)
    usage = inprocess.client.get("/v1/usage", headers=headers)
    assert usage.status_code == 200 and usage.json()["data"][0]["requests"] == 1


# -- tokenizer -------------------------------------------------------------------------------------


def test_tokenize_and_detokenize_round_trip(inprocess: InProcess) -> None:
    headers = inprocess.account()
    tokens = inprocess.client.post(
        "/tokenize", json={"model": FAKE_MODEL, "prompt": "hello"}, headers=headers
    )
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["count"] == 5 and tokens.json()["max_model_len"] == 4096
    text = inprocess.client.post("/detokenize", json={"tokens": tokens.json()["tokens"]}, headers=headers)
    assert text.json() == {"prompt": "hello"}
    chat = inprocess.client.post(
        "/tokenize", json={"messages": [{"role": "user", "content": "hi"}]}, headers=headers
    )
    assert chat.status_code == 200 and chat.json()["count"] == 2


def test_the_tokenizer_needs_a_key_and_refuses_what_it_cannot_do(inprocess: InProcess) -> None:
    assert inprocess.client.post("/tokenize", json={"prompt": "x"}).status_code == 401
    assert inprocess.client.post("/detokenize", json={"tokens": [1]}).status_code == 401
    headers = inprocess.account()
    for body, param in (
        ({"prompt": "x", "return_token_strs": True}, "return_token_strs"),
        (
            {"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": False},
            "add_generation_prompt",
        ),
        ({"prompt": "x", "chat_template": "{{x}}"}, "chat_template"),
        ({"prompt": "x", "model": "nope"}, "model"),
    ):
        reply = inprocess.client.post("/tokenize", json=body, headers=headers)
        assert reply.status_code in (400, 404), reply.text
        assert reply.json()["error"]["param"] == param


def test_the_tokenizer_costs_nothing(inprocess: InProcess) -> None:
    headers = inprocess.account(credits=1.0)
    before = inprocess.client.get("/v1/me", headers=headers).json()["credits"]
    inprocess.client.post("/tokenize", json={"prompt": "hello"}, headers=headers)
    assert inprocess.client.get("/v1/me", headers=headers).json()["credits"] == before
