"""Tool calling for chat requests, with vLLM's own parsers and structural tags.

What `vllm serve --enable-auto-tool-choice --tool-call-parser NAME` does, for ragway's proto:

- The tools and any tool calls / tool results in the history are rendered into the prompt by a
  tool-aware chat template: the model's own when it renders `tools`, else a Hermes-style ChatML
  template (`HERMES_CHATML_TEMPLATE`; SmolLM2's own template is plain ChatML).
- vLLM's parser for the model (`ParserManager`, e.g. "hermes") decides the decoding constraint:
  for tool_choice required / named it is a structural tag that forces `<tool_call>{"name": ...,
  "arguments": ...}</tool_call>` with the arguments constrained to the tool's JSON Schema, so even
  a 135M model returns calls whose arguments validate; for auto it leaves the text free (or only
  constrains calls the model starts, per the strict level).
- The same parser then reads each choice's text as it streams, and splits it into content and
  tool-call deltas in OpenAI's shape (id and name first, then argument fragments).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragway.core.errors import InvalidArgument
from ragway.v1 import model_pb2

# Hermes function calling on ChatML, as Qwen2.5 and NousResearch's Hermes models write it: the tools
# as JSON lines inside <tools></tools> in the system turn, each call as a JSON object inside
# <tool_call></tool_call>, tool results as <tool_response> blocks in a user turn. The call layout
# ('{"name": "f", "arguments": {...}}', one per line) is the one vLLM's "hermes" structural tag and
# parser expect. Without tools it renders exactly what plain ChatML would.
HERMES_CHATML_TEMPLATE = """\
{%- set default_system = 'You are a helpful assistant.' -%}
{%- if messages and messages[0].role == 'system' -%}
  {%- set system = messages[0].content -%}
  {%- set rest = messages[1:] -%}
{%- else -%}
  {%- set system = default_system -%}
  {%- set rest = messages -%}
{%- endif -%}
{{- '<|im_start|>system\\n' + system -}}
{%- if tools -%}
  {{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' -}}
  {{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' -}}
  {%- for tool in tools -%}
    {{- '\\n' + (tool | tojson) -}}
  {%- endfor -%}
  {{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and ' -}}
  {{- 'arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n' -}}
  {{- '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call>' -}}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- for message in rest -%}
  {%- if message.role == 'assistant' and message.tool_calls -%}
    {{- '<|im_start|>assistant' -}}
    {%- if message.content -%}{{- '\\n' + message.content -}}{%- endif -%}
    {%- for call in message.tool_calls -%}
      {{- '\\n<tool_call>\\n{"name": ' + (call.function.name | tojson) + ', "arguments": ' -}}
      {{- (call.function.arguments | tojson) + '}\\n</tool_call>' -}}
    {%- endfor -%}
    {{- '<|im_end|>\\n' -}}
  {%- elif message.role == 'tool' -%}
    {%- if loop.first or rest[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
    {{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' -}}
    {%- if loop.last or rest[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}
  {%- else -%}
    {{- '<|im_start|>' + message.role + '\\n' + (message.content or '') + '<|im_end|>\\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}
"""

# OpenAI's rule for function names.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_MODES = {
    model_pb2.TOOL_CHOICE_MODE_NONE: "none",
    model_pb2.TOOL_CHOICE_MODE_AUTO: "auto",
    model_pb2.TOOL_CHOICE_MODE_REQUIRED: "required",
}


def _arguments_object(text: str, where: str) -> Any:
    """A call's arguments as the chat template needs them: the parsed JSON value."""
    try:
        return json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{where}.arguments is not valid JSON: {exc}", field="messages") from exc


def _conversation(chat: model_pb2.ChatInput) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The messages twice: OpenAI-shaped (arguments as JSON text, what vLLM's request takes) and
    template-shaped (arguments as objects, what HF chat templates index into)."""
    openai: list[dict[str, Any]] = []
    template: list[dict[str, Any]] = []
    for i, m in enumerate(chat.messages):
        message: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            if m.role != "assistant":
                raise InvalidArgument(
                    f"messages[{i}]: only assistant messages carry tool_calls", field="messages"
                )
            calls = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in m.tool_calls
            ]
            parsed = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": _arguments_object(c.arguments, f"messages[{i}].tool_calls[{j}]"),
                    },
                }
                for j, c in enumerate(m.tool_calls)
            ]
            openai.append({**message, "tool_calls": calls})
            template.append({**message, "tool_calls": parsed})
            continue
        if m.role == "tool":
            message["tool_call_id"] = m.tool_call_id
            if m.name:
                message["name"] = m.name
        openai.append(message)
        template.append(dict(message))
    return openai, template


def _tools(chat: model_pb2.ChatInput) -> list[dict[str, Any]]:
    """The request's tools as OpenAI tool dicts, checked."""
    tools: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, tool in enumerate(chat.tools):
        if not _NAME.match(tool.name):
            raise InvalidArgument(
                f"tools[{i}].name must be 1-64 letters, digits, '_' or '-', got {tool.name!r}", field="tools"
            )
        if tool.name in seen:
            raise InvalidArgument(f"tools[{i}].name {tool.name!r} is not unique", field="tools")
        seen.add(tool.name)
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        if tool.parameters:
            try:
                schema = json.loads(tool.parameters)
            except json.JSONDecodeError as exc:
                raise InvalidArgument(
                    f"tools[{i}].parameters is not valid JSON: {exc}", field="tools"
                ) from exc
            if not isinstance(schema, dict):
                raise InvalidArgument(f"tools[{i}].parameters must be a JSON Schema object", field="tools")
            function["parameters"] = schema
        else:
            function["parameters"] = {"type": "object", "properties": {}}
        if tool.strict:
            function["strict"] = True
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(chat: model_pb2.ChatInput) -> str | dict[str, Any] | None:
    """OpenAI's tool_choice for the request; None leaves vLLM's default (auto with tools)."""
    choice = chat.tool_choice
    if choice.mode == model_pb2.TOOL_CHOICE_MODE_NAMED:
        if not choice.name:
            raise InvalidArgument("tool_choice NAMED needs the function's name", field="tool_choice")
        return {"type": "function", "function": {"name": choice.name}}
    return _MODES.get(choice.mode)


def _references_tools(chat: model_pb2.ChatInput) -> bool:
    return any(m.tool_calls or m.role == "tool" for m in chat.messages)


@dataclass(frozen=True)
class ChatPrompt:
    """What the chat template renders: messages, tools (None: none shown) and the template (None:
    the model's own)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    template: str | None


@dataclass
class ToolStream:
    """One choice's text, split by vLLM's parser into content and tool-call deltas as it streams."""

    parser: Any
    request: Any
    prompt_ids: list[int]
    named: bool
    called: bool = False
    # vLLM's parse_delta wants the prompt once, on the first delta.
    _first: bool = field(default=True, repr=False)

    def feed(self, text: str, token_ids: list[int], finished: bool) -> tuple[str, list[Any]]:
        """The content and vLLM DeltaToolCalls that `text` (this step's delta) adds."""
        delta = self.parser.parse_delta(
            text,
            token_ids,
            self.request,
            self.prompt_ids if self._first else None,
            finished=finished,
        )
        self._first = False
        if delta is None:
            return "", []
        if delta.tool_calls:
            self.called = True
        return delta.content or "", list(delta.tool_calls)

    def ends_with_tool_calls(self, finish_reason: str | None) -> bool:
        """OpenAI's rule: "tool_calls" after calls under auto or required; a named call is "stop"."""
        return self.called and finish_reason == "stop" and not self.named


@dataclass
class ToolSession:
    """One request's tool calling: the vLLM request its parsers read, one stream per choice."""

    parser_cls: Any
    tokenizer: Any
    request: Any
    prompt_ids: list[int]
    streams: dict[int, ToolStream] = field(default_factory=dict)

    def stream(self, index: int) -> ToolStream:
        if index not in self.streams:
            self.streams[index] = ToolStream(
                parser=self.parser_cls(self.tokenizer, self.request.tools),
                request=self.request,
                prompt_ids=self.prompt_ids,
                named=isinstance(self.request.tool_choice, dict)
                or hasattr(self.request.tool_choice, "function"),
            )
        return self.streams[index]


class ToolCalling:
    """The served model's tool calling: its chat template for tools and vLLM's parser class."""

    def __init__(
        self, tokenizer: Any, parser_name: str, strict_level: str, template_file: Path | None
    ) -> None:
        self.tokenizer = tokenizer
        self.parser_cls: Any = None
        if parser_name:
            from vllm.parser.parser_manager import ParserManager

            self.parser_cls = ParserManager.get_parser(
                tool_parser_name=parser_name,
                enable_auto_tools=True,
                tool_strict_level=strict_level,
                tokenizer=tokenizer,
            )
        if template_file is not None:
            self.template: str | None = template_file.read_text()
        elif self._model_template_renders_tools():
            self.template = None
        else:
            self.template = HERMES_CHATML_TEMPLATE

    def _model_template_renders_tools(self) -> bool:
        template = getattr(self.tokenizer, "chat_template", None)
        if isinstance(template, dict):
            template = template.get("tool_use") or template.get("default")
        return isinstance(template, str) and "tools" in template

    def prompt(self, chat: model_pb2.ChatInput) -> ChatPrompt:
        """The messages and tools to render, and with which template."""
        _, messages = _conversation(chat)
        tools = _tools(chat)
        if chat.tool_choice.mode == model_pb2.TOOL_CHOICE_MODE_NONE:
            tools = []  # vLLM's default too: a model that is not to call tools is not shown them
        if not tools and not _references_tools(chat):
            return ChatPrompt(messages, None, None)  # exactly the prompt a chat without tools gets
        return ChatPrompt(messages, tools or None, self.template)

    def session(self, chat: model_pb2.ChatInput, params: Any, prompt_ids: list[int]) -> ToolSession | None:
        """Set up tool calling for a Generate request; sets params' constraint and special-token
        handling the way vLLM's serving layer does. None when the request has no tools."""
        if not chat.tools:
            if chat.tool_choice.mode not in (
                model_pb2.TOOL_CHOICE_MODE_UNSPECIFIED,
                model_pb2.TOOL_CHOICE_MODE_NONE,
            ):
                raise InvalidArgument("tool_choice needs tools", field="tool_choice")
            return None
        if chat.tool_choice.mode == model_pb2.TOOL_CHOICE_MODE_NONE:
            return None
        if self.parser_cls is None:
            raise InvalidArgument(
                "this model service has no tool parser (RAGWAY_MODEL_TOOL_CALL_PARSER)", field="tools"
            )
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        openai_messages, _ = _conversation(chat)
        body: dict[str, Any] = {"messages": openai_messages, "tools": _tools(chat)}
        choice = _tool_choice(chat)
        if choice is not None:
            body["tool_choice"] = choice
        if chat.HasField("parallel_tool_calls"):
            body["parallel_tool_calls"] = chat.parallel_tool_calls
        if params.structured_outputs is not None:
            body["structured_outputs"] = params.structured_outputs
        request = _validated(ChatCompletionRequest, body)
        from vllm.exceptions import VLLMClientError

        parser = self.parser_cls(self.tokenizer, request.tools)
        try:
            request = parser.adjust_request(request)
        except (ValueError, VLLMClientError) as exc:
            raise InvalidArgument(f"the tools cannot be used: {exc}", field=_parameter(exc, "tools")) from exc
        params.structured_outputs = request.structured_outputs
        params.skip_special_tokens = request.skip_special_tokens
        return ToolSession(self.parser_cls, self.tokenizer, request, prompt_ids)


def _parameter(exc: BaseException, default: str) -> str:
    """The request field a vLLM validation error names, as ragway's proto calls it."""
    parameter = str(getattr(exc, "parameter", None) or default)
    return parameter.split(".")[0]


def _validated(model: Any, body: dict[str, Any]) -> Any:
    from pydantic import ValidationError
    from vllm.exceptions import VLLMClientError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = first.get("ctx", {}).get("error")
        where = str(first["loc"][0]) if first.get("loc") else "tools"
        raise InvalidArgument(
            f"invalid tool request: {cause or first['msg']}",
            field=_parameter(cause, where) if cause is not None else where,
        ) from exc
    except (ValueError, VLLMClientError) as exc:  # vLLM's validators raise VLLMValidationError as is
        raise InvalidArgument(f"invalid tool request: {exc}", field=_parameter(exc, "tools")) from exc
