"""Tool calling through the real engine: named and required calls are constrained to the tools'
schemas, auto calls are parsed from the stream by vLLM's Hermes parser, tool history renders
into the prompt, and bad tool requests are INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import jsonschema
import pytest

from ragway.v1 import model_pb2 as pb
from tests.model.helpers import collect, tool_calls
from tests.model.schemas import SCHEMAS

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
TIME_SCHEMA = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "pattern": "^[A-Z][a-z]+/[A-Z][a-z]+$"}},
    "required": ["timezone"],
}
WEATHER = pb.Tool(
    name="get_weather",
    description="Get the current weather in a city.",
    parameters=json.dumps(WEATHER_SCHEMA),
)
TIME = pb.Tool(
    name="get_time", description="Get the local time in a time zone.", parameters=json.dumps(TIME_SCHEMA)
)
SCHEMA_OF = {"get_weather": WEATHER_SCHEMA, "get_time": TIME_SCHEMA}


def tool_request(
    messages: list[pb.ChatMessage] | str,
    tools: list[pb.Tool],
    mode: int,
    name: str = "",
    parallel: bool | None = None,
    **sampling: Any,
) -> pb.GenerateRequest:
    if isinstance(messages, str):
        messages = [pb.ChatMessage(role="user", content=messages)]
    chat = pb.ChatInput(messages=messages, tools=tools, tool_choice=pb.ToolChoice(mode=mode, name=name))  # type: ignore[arg-type]
    if parallel is not None:
        chat.parallel_tool_calls = parallel
    sampling.setdefault("max_tokens", 200)
    sampling.setdefault("temperature", 0)
    return pb.GenerateRequest(chat=chat, sampling=pb.SamplingParams(**sampling))


def history() -> list[pb.ChatMessage]:
    return [
        pb.ChatMessage(role="user", content="What is the weather in Paris?"),
        pb.ChatMessage(
            role="assistant",
            tool_calls=[pb.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')],
        ),
        pb.ChatMessage(role="tool", tool_call_id="call_1", name="get_weather", content='{"temperature": 21}'),
    ]


async def test_named_tool_arguments_validate_on_twenty_schemas(stub) -> None:  # type: ignore[no-untyped-def]
    requests = [
        tool_request(
            prompt,
            [pb.Tool(name=name, description=prompt, parameters=json.dumps(schema))],
            pb.TOOL_CHOICE_MODE_NAMED,
            name=name,
            max_tokens=300,
        )
        for name, prompt, schema in SCHEMAS
    ]
    results = await asyncio.gather(*(collect(stub, r) for r in requests))
    failures = []
    for (name, _, schema), (texts, messages) in zip(SCHEMAS, results, strict=True):
        calls = tool_calls(messages)
        assert [c["name"] for c in calls] == [name], f"{name}: {calls} / {texts}"
        try:
            jsonschema.validate(json.loads(calls[0]["arguments"]), schema)
        except (ValueError, jsonschema.ValidationError) as exc:
            failures.append(f"{name}: {exc} in {calls[0]['arguments']!r}")
        assert texts[0] == "", "a forced call has no content"
        # OpenAI ends a named call with "stop", an auto or required one with "tool_calls".
        assert messages[-1].choices[0].finish_reason == pb.FINISH_REASON_STOP
    assert not failures, f"{len(SCHEMAS) - len(failures)}/{len(SCHEMAS)} validated: {failures}"


@pytest.mark.parametrize(
    "question",
    [
        "What is the weather in Tokyo?",
        "What time is it in Europe/Berlin?",
        "Say hello.",
        "What is 2 + 2?",
        "Write a poem about the sea.",
        "Tell me a joke.",
    ],
)
async def test_required_always_yields_a_valid_call(stub, question: str) -> None:  # type: ignore[no-untyped-def]
    texts, messages = await collect(
        stub, tool_request(question, [WEATHER, TIME], pb.TOOL_CHOICE_MODE_REQUIRED)
    )
    calls = tool_calls(messages)
    assert calls, f"no call for {question!r}: {texts}"
    for call in calls:
        jsonschema.validate(json.loads(call["arguments"]), SCHEMA_OF[call["name"]])
    assert "<tool_call>" not in texts[0]
    assert messages[-1].choices[0].finish_reason == pb.FINISH_REASON_TOOL_CALLS


async def test_required_without_parallel_calls_makes_exactly_one(stub) -> None:  # type: ignore[no-untyped-def]
    request = tool_request(
        "Weather in Paris and in Rome, and the time in Europe/Paris?",
        [WEATHER, TIME],
        pb.TOOL_CHOICE_MODE_REQUIRED,
        parallel=False,
    )
    _, messages = await collect(stub, request)
    assert len(tool_calls(messages)) == 1


async def test_required_with_sampling_and_several_choices(stub) -> None:  # type: ignore[no-untyped-def]
    request = tool_request(
        "What is the weather in Oslo?",
        [WEATHER, TIME],
        pb.TOOL_CHOICE_MODE_REQUIRED,
        temperature=1.0,
        seed=3,
        n=3,
    )
    _, messages = await collect(stub, request)
    for index in range(3):
        calls = tool_calls(messages, index)
        assert calls, f"choice {index} made no call"
        for call in calls:
            jsonschema.validate(json.loads(call["arguments"]), SCHEMA_OF[call["name"]])


async def test_auto_parses_a_hermes_call_out_of_the_stream(stub) -> None:  # type: ignore[no-untyped-def]
    # The 135M model may or may not decide to call a tool, so a regex makes it write a Hermes call
    # (with auto, vLLM lets the output be either a call or the constrained text); the call must
    # come back parsed by vLLM's Hermes parser, not as text.
    hermes = r'<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "Paris"\}\}\n</tool_call>'
    request = tool_request(
        "What is the weather in Paris?", [WEATHER, TIME], pb.TOOL_CHOICE_MODE_AUTO, regex=hermes
    )
    texts, messages = await collect(stub, request)
    calls = tool_calls(messages)
    assert [c["name"] for c in calls] == ["get_weather"], texts
    jsonschema.validate(json.loads(calls[0]["arguments"]), WEATHER_SCHEMA)
    assert "<tool_call>" not in texts[0]
    assert messages[-1].choices[0].finish_reason == pb.FINISH_REASON_TOOL_CALLS


async def test_auto_returns_either_text_or_parsed_calls(stub) -> None:  # type: ignore[no-untyped-def]
    for question in ("Write a haiku about the sea.", "What is the weather in Paris? Use the tool."):
        texts, messages = await collect(stub, tool_request(question, [WEATHER], pb.TOOL_CHOICE_MODE_AUTO))
        calls = tool_calls(messages)
        assert "<tool_call>" not in texts[0], "a call must never leak into the text"
        if calls:
            assert messages[-1].choices[0].finish_reason == pb.FINISH_REASON_TOOL_CALLS
            jsonschema.validate(json.loads(calls[0]["arguments"]), WEATHER_SCHEMA)
        else:
            assert texts[0] and messages[-1].choices[0].finish_reason in (
                pb.FINISH_REASON_STOP,
                pb.FINISH_REASON_LENGTH,
            )


async def test_tools_calls_and_results_render_into_the_prompt(stub) -> None:  # type: ignore[no-untyped-def]
    chat = pb.ChatInput(messages=history(), tools=[WEATHER])
    tokens = await stub.Tokenize(pb.TokenizeRequest(chat=chat))
    prompt = (await stub.Detokenize(pb.DetokenizeRequest(ids=tokens.ids))).text
    assert (
        "<tools>\n"
        + json.dumps(
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": WEATHER.description,
                    "parameters": WEATHER_SCHEMA,
                },
            }
        )
        + "\n</tools>"
        in prompt
    )
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert '<|im_start|>user\n<tool_response>\n{"temperature": 21}\n</tool_response><|im_end|>' in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    # Generate renders the same prompt, and the model answers from the tool's result.
    texts, messages = await collect(stub, tool_request(history(), [WEATHER], pb.TOOL_CHOICE_MODE_AUTO))
    assert messages[0].prompt_tokens == tokens.count
    assert texts[0] or tool_calls(messages)


async def test_tool_choice_none_leaves_the_tools_out(stub) -> None:  # type: ignore[no-untyped-def]
    question = [pb.ChatMessage(role="user", content="Hello")]
    plain = await stub.Tokenize(pb.TokenizeRequest(chat=pb.ChatInput(messages=question)))
    none = await stub.Tokenize(
        pb.TokenizeRequest(
            chat=pb.ChatInput(
                messages=question, tools=[WEATHER], tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE)
            )
        )
    )
    assert list(none.ids) == list(plain.ids)
    texts, messages = await collect(
        stub, tool_request("Hello", [WEATHER], pb.TOOL_CHOICE_MODE_NONE, max_tokens=20)
    )
    assert texts[0] and not tool_calls(messages)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (tool_request("hi", [WEATHER], pb.TOOL_CHOICE_MODE_NAMED, name="no_such_tool"), "tool_choice"),
        (tool_request("hi", [WEATHER], pb.TOOL_CHOICE_MODE_NAMED), "tool_choice"),
        (tool_request("hi", [], pb.TOOL_CHOICE_MODE_REQUIRED), "tool_choice"),
        (tool_request("hi", [pb.Tool(name="f", parameters="{oops")], pb.TOOL_CHOICE_MODE_AUTO), "tools"),
        (tool_request("hi", [pb.Tool(name="bad name!")], pb.TOOL_CHOICE_MODE_AUTO), "tools"),
        (tool_request("hi", [WEATHER, WEATHER], pb.TOOL_CHOICE_MODE_AUTO), "tools"),
        (
            tool_request(
                "hi",
                [
                    pb.Tool(
                        name="f",
                        parameters=json.dumps({"type": "object", "properties": {"a": {"$ref": "#/nope"}}}),
                    )
                ],
                pb.TOOL_CHOICE_MODE_REQUIRED,
            ),
            "tools",
        ),
        (
            tool_request(
                [
                    pb.ChatMessage(role="user", content="hi"),
                    pb.ChatMessage(
                        role="assistant", tool_calls=[pb.ToolCall(id="c", name="f", arguments="{oops")]
                    ),
                ],
                [WEATHER],
                pb.TOOL_CHOICE_MODE_AUTO,
            ),
            "messages",
        ),
    ],
)
async def test_invalid_tool_requests_name_the_field(stub, request_: pb.GenerateRequest, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request_).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert ("ragway-field", field) in tuple(info.value.trailing_metadata()), info.value.details()
