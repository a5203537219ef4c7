"""Request and response types of `POST /v1/chat/completions`: OpenAI's, plus ragway's
additions (`rag`, `conversation_id`, citations)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from ragway.gateway.completion.protocol import SamplingFields, TokenLogprob, Usage
from ragway.gateway.core.wire import Metadata, PromptCaching, StrictModel, omit_none
from ragway.gateway.rag.protocol import SearchTuning

MAX_MESSAGES = 1000


class TextPart(StrictModel):
    type: Literal["text"]
    text: str


class FunctionCallOut(StrictModel):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(max_length=1_000_000, description="A JSON object, as text.")


class ToolCallIn(StrictModel):
    """A call an assistant message made earlier in the conversation."""

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCallOut


class ChatMessage(StrictModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: list[ToolCallIn] | None = Field(None, max_length=128, description="Assistant messages.")
    tool_call_id: str | None = Field(None, max_length=256, description="Tool messages: the call answered.")
    refusal: str | None = Field(None, description="Assistant messages; kept as their text.")

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for number, part in enumerate(value):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    raise ValueError(
                        f"content part {number} has type {kind!r}; the served model reads text only "
                        "(image, audio and file parts need a model that takes them)"
                    )
        return value

    @model_validator(mode="after")
    def _role_fields(self) -> ChatMessage:
        if self.tool_calls and self.role != "assistant":
            raise ValueError("tool_calls belong to assistant messages")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        return self

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or self.refusal or ""


class FunctionDefinition(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=100_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(StrictModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(StrictModel):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(StrictModel):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(StrictModel):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(StrictModel):
    """OpenAI's response_format: text, json_object, or json_schema (constrained decoding)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format type json_schema needs json_schema")
        return self


class RagOptions(SearchTuning):
    """Ground the answer in these collections (ragway extension); `mode`, `hybrid`,
    `ranking_options` and `params` tune the search as on `/v1/collections/{name}/search`."""

    collections: list[str] = Field(min_length=1, max_length=16)
    top_k: int = Field(5, ge=1, le=50)
    filter: dict[str, Any] | None = None
    min_score: float | None = Field(None, ge=-1.0, le=1.0)
    rewrite_query: bool = Field(
        False, description="Let the served model rewrite a follow-up into a standalone search query."
    )


class ChatCompletionRequest(SamplingFields, PromptCaching):
    messages: list[ChatMessage] = Field(max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[FunctionTool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    modalities: list[Literal["text"]] | None = Field(
        None, description="Text is the only output ragway makes."
    )
    metadata: Metadata | None = Field(None, description="Up to 16 pairs, kept with a stored exchange.")
    conversation_id: str | None = Field(None, max_length=64, description="Continue a stored conversation.")
    store: bool = Field(False, description="Keep this exchange in the conversation history (as OpenAI: off).")
    rag: RagOptions | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if not self.messages:
            raise ValueError("messages must hold at least one message")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs: true")
        if self.tool_choice not in (None, "none") and not self.tools:
            raise ValueError("tool_choice needs tools")
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in {
            t.function.name for t in self.tools or []
        }:
            raise ValueError(f"tool_choice names {self.tool_choice.function.name!r}, which is not in tools")
        return self

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class Citation(BaseModel):
    index: int
    collection: str
    document_id: str
    chunk_index: int
    score: float
    snippet: str
    metadata: dict[str, Any] = {}
    cited: bool | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="On an answer's citations: whether the answer cited this source with [n].",
    )


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = omit_none()


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    conversation_id: str | None = omit_none()
    citations: list[Citation] | None = omit_none()


class DeltaFunction(BaseModel):
    name: str | None = omit_none()
    arguments: str | None = omit_none()


class DeltaToolCall(BaseModel):
    """A streamed tool call: the first delta carries index, id, type and name; later ones carry
    the same index and the next fragment of the arguments."""

    index: int
    id: str | None = omit_none()
    type: Literal["function"] | None = omit_none()
    function: DeltaFunction


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = omit_none()
    content: str | None = omit_none()
    tool_calls: list[DeltaToolCall] | None = omit_none()


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One SSE event of a chat stream. `usage` is null on every chunk but the last when the client
    asked for it (stream_options.include_usage) and absent otherwise, as OpenAI sends it."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    conversation_id: str | None = omit_none()
    citations: list[Citation] | None = omit_none()
