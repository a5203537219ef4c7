"""Tool calling without the engine: the bundled model's tokenizer, the Hermes ChatML template and
vLLM's own Hermes parser and structural tags (what the engine then enforces is in test_tools.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ragway.core.errors import InvalidArgument
from ragway.model.tools import ToolCalling
from ragway.v1 import model_pb2 as pb

MODEL_DIR = Path("~/.cache/ragway/SmolLM2-135M-Instruct").expanduser()
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = pb.Tool(name="get_weather", description="Weather in a city.", parameters=json.dumps(SCHEMA))

# `make install` converts the model into MODEL_DIR before any test runs; without it these fail.


@pytest.fixture(scope="module")
def tools() -> ToolCalling:
    from vllm.tokenizers import get_tokenizer

    return ToolCalling(get_tokenizer(str(MODEL_DIR)), "hermes", "parameter", None)


def render(tools: ToolCalling, chat: pb.ChatInput) -> str:
    prompt = tools.prompt(chat)
    return str(
        tools.tokenizer.apply_chat_template(
            prompt.messages,
            tools=prompt.tools,
            chat_template=prompt.template,
            tokenize=False,
            add_generation_prompt=True,
        )
    )


def sampling() -> Any:
    from vllm import SamplingParams

    return SamplingParams(max_tokens=8)


def test_chat_without_tools_keeps_the_models_own_prompt(tools: ToolCalling) -> None:
    chat = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="Hi")])
    own = tools.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert render(tools, chat) == own
    assert tools.session(chat, sampling(), [1]) is None


def test_without_tools_the_hermes_template_is_plain_chatml(tools: ToolCalling) -> None:
    assert tools.template is not None  # SmolLM2's own template does not render tools
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    hermes = tools.tokenizer.apply_chat_template(
        messages, chat_template=tools.template, tokenize=False, add_generation_prompt=True
    )
    assert hermes == tools.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_parallel_calls_and_results_render_in_hermes_format(tools: ToolCalling) -> None:
    chat = pb.ChatInput(
        messages=[
            pb.ChatMessage(role="system", content="Be brief."),
            pb.ChatMessage(role="user", content="Weather in Paris and Rome?"),
            pb.ChatMessage(
                role="assistant",
                tool_calls=[
                    pb.ToolCall(id="a", name="get_weather", arguments='{"city": "Paris"}'),
                    pb.ToolCall(id="b", name="get_weather", arguments='{"city": "Rome"}'),
                ],
            ),
            pb.ChatMessage(role="tool", tool_call_id="a", content="21C"),
            pb.ChatMessage(role="tool", tool_call_id="b", content="25C"),
        ],
        tools=[WEATHER],
    )
    text = render(tools, chat)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    assert (
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\n'
    ) in text
    # Consecutive tool results share one user turn, as Hermes and Qwen models were trained.
    assert (
        "<|im_start|>user\n<tool_response>\n21C\n</tool_response>\n<tool_response>\n25C\n</tool_response>"
        "<|im_end|>\n<|im_start|>assistant\n"
    ) in text


def test_streamed_hermes_text_becomes_openai_tool_call_deltas(tools: ToolCalling) -> None:
    chat = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="Weather?")], tools=[WEATHER])
    params = sampling()
    session = tools.session(chat, params, [1, 2])
    assert session is not None
    stream = session.stream(0)
    output = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    content, calls = "", []
    for i in range(0, len(output), 7):  # a few characters per step, as tokens arrive
        text, new = stream.feed(output[i : i + 7], [], finished=i + 7 >= len(output))
        content += text
        calls += new
    assert content == "Let me check."
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert all(c.id is None and not c.function.name for c in calls[1:])
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {"city": "Paris"}
    assert stream.ends_with_tool_calls("stop") and not stream.ends_with_tool_calls("length")


@pytest.mark.parametrize(
    ("mode", "name"),
    [
        (pb.TOOL_CHOICE_MODE_REQUIRED, ""),
        (pb.TOOL_CHOICE_MODE_NAMED, "get_weather"),
        (pb.TOOL_CHOICE_MODE_AUTO, ""),  # strict level "parameter": calls the model starts are checked too
    ],
)
def test_tool_choice_sets_a_structural_tag(tools: ToolCalling, mode: int, name: str) -> None:
    chat = pb.ChatInput(
        messages=[pb.ChatMessage(role="user", content="Weather?")],
        tools=[WEATHER],
        tool_choice=pb.ToolChoice(mode=mode, name=name),  # type: ignore[arg-type]
    )
    params = sampling()
    tools.session(chat, params, [1])
    tag = json.loads(params.structured_outputs.structural_tag)
    assert "get_weather" in json.dumps(tag) and SCHEMA["properties"] == tag_schema(tag)["properties"]


def tag_schema(tag: dict[str, Any]) -> dict[str, Any]:
    """The first JSON Schema inside a structural tag."""
    found: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "json_schema":
                found.append(node["json_schema"])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(tag)
    return found[0]


def test_tool_choice_none_neither_renders_nor_parses(tools: ToolCalling) -> None:
    chat = pb.ChatInput(
        messages=[pb.ChatMessage(role="user", content="Hi")],
        tools=[WEATHER],
        tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE),
    )
    assert "<tools>" not in render(tools, chat)
    assert tools.session(chat, sampling(), [1]) is None


@pytest.mark.parametrize(
    ("chat", "field"),
    [
        (pb.ChatInput(messages=[pb.ChatMessage(role="user", content="hi")],
                      tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED)), "tool_choice"),
        (pb.ChatInput(messages=[pb.ChatMessage(role="user", content="hi")], tools=[WEATHER],
                      tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NAMED, name="nope")), "tool_choice"),
        (pb.ChatInput(messages=[pb.ChatMessage(role="user", content="hi")],
                      tools=[pb.Tool(name="f", parameters="[]")]), "tools"),
        (pb.ChatInput(messages=[pb.ChatMessage(role="user", content="hi",
                                               tool_calls=[pb.ToolCall(name="f")])],
                      tools=[WEATHER]), "messages"),
    ],
)  # fmt: skip
def test_bad_tool_requests_name_the_field(tools: ToolCalling, chat: pb.ChatInput, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        tools.prompt(chat)
        tools.session(chat, sampling(), [1])
    assert info.value.field == field
