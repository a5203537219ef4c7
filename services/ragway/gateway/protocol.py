"""Request and response types of the gateway's HTTP API: OpenAI's, plus ragway's additions.

Kept apart from the serving logic (as vLLM's entrypoints/openai/protocol.py is), so the OpenAPI
schema — and the fuzzer that reads it — describes exactly what the routes accept.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ragway.gateway.search_protocol import IndexOptions, SearchTuning

MAX_MESSAGES = 1000
MAX_STOP = 4

# OpenAI parameters ragway refuses, and why: the 400 names the parameter and gives the reason.
UNSUPPORTED = {
    "audio": "audio output needs an audio model",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "ragway has no web search; use `rag` or file_search over your own documents",
    "functions": "deprecated by OpenAI; use tools",
    "function_call": "deprecated by OpenAI; use tool_choice",
    "reasoning_effort": "the served model does not reason in a separate channel",
    "verbosity": "the served model takes no verbosity setting",
    "moderation": "ragway runs no moderation model",
    "prompt_cache_options": "vLLM's prefix cache takes no per-request options",
    "best_of": "best_of is not supported; use n",
    "suffix": "insertion (suffix) is not supported by the served model",
}


class _Strict(BaseModel):
    """A field ragway does not know is a 400 naming it, never accepted and ignored: a client that
    relies on it must hear that it had no effect."""

    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class FunctionCallOut(_Strict):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(max_length=1_000_000, description="A JSON object, as text.")


class ToolCallIn(_Strict):
    """A call an assistant message made earlier in the conversation."""

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCallOut


class ChatMessage(_Strict):
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


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: Literal[False] | None = Field(
        None, description="ragway never pads stream events; only false is accepted."
    )


class FunctionDefinition(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=100_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
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


class SamplingFields(_Strict):
    """Sampling parameters shared by chat and text completions."""

    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    top_k: int | None = Field(None, ge=-1, le=1_000_000, description="vLLM's: keep the k likeliest tokens.")
    min_p: float | None = Field(
        None, ge=0.0, le=1.0, description="vLLM's: drop tokens below p x the top one."
    )
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0, description="vLLM's (HF-style) penalty.")
    ignore_eos: bool = Field(
        False,
        description="vLLM's: generate max_tokens past end-of-sequence (benchmarks); billed as generated.",
    )
    logit_bias: dict[str, float] | None = Field(
        None, description="Token id (as text) -> bias in [-100, 100]."
    )
    user: str | None = Field(None, max_length=256, description="End-user id, as OpenAI takes it; logged.")
    safety_identifier: str | None = Field(None, max_length=256, description="As `user`.")
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("logit_bias")
    @classmethod
    def _biases(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not token.isdigit() or int(token) >= 2**31:
                raise ValueError(f"logit_bias keys are token ids; {token!r} is not one")
            if not -100 <= bias <= 100:
                raise ValueError(f"logit_bias values are in [-100, 100]; got {bias}")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > MAX_STOP or any(not s for s in stops):
            raise ValueError(f"stop takes up to {MAX_STOP} non-empty strings")
        return stops

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingFields):
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
    service_tier: Literal["auto", "default"] | None = Field(None, description="One tier: the default.")
    prompt_cache_key: str | None = Field(
        None, max_length=1024, description="A hint; vLLM's prefix cache finds shared prefixes by itself."
    )
    prompt_cache_retention: Literal["in_memory"] | None = Field(
        None, description="vLLM's prefix cache lives in memory; longer retention is refused."
    )
    metadata: dict[str, str] | None = Field(None, description="Up to 16 pairs, kept with a stored exchange.")
    conversation_id: str | None = Field(None, max_length=64, description="Continue a stored conversation.")
    store: bool = Field(False, description="Keep this exchange in the conversation history (as OpenAI: off).")
    rag: RagOptions | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (
            len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())
        ):
            raise ValueError("metadata takes up to 16 pairs, keys up to 64 and values up to 512 characters")
        return value

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


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] = Field(description="Text, a one-element list of text, or token ids.")
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: Literal[False] = Field(False, description="Echoing the prompt back is not supported.")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str] | list[int]) -> str | list[int]:
        if isinstance(value, list) and value and isinstance(value[0], str):
            if len(value) != 1:
                raise ValueError("only one prompt per request is supported")
            value = value[0]
        if not value:
            raise ValueError("prompt must not be empty")
        if isinstance(value, list) and any((not isinstance(t, int)) or t < 0 for t in value):
            raise ValueError("token ids must be non-negative integers")
        return value  # type: ignore[return-value]


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


# -- responses: chat and text completions, exactly as OpenAI shapes them ----------------------------


def _omit_none() -> Any:
    """A field OpenAI leaves out when it has no value (not one it sends as null)."""
    return Field(None, exclude_if=lambda v: v is None)


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class TextLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int] = Field(default_factory=list)


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = _omit_none()


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
    conversation_id: str | None = _omit_none()
    citations: list[Citation] | None = _omit_none()


class DeltaFunction(BaseModel):
    name: str | None = _omit_none()
    arguments: str | None = _omit_none()


class DeltaToolCall(BaseModel):
    """A streamed tool call: the first delta carries index, id, type and name; later ones carry
    the same index and the next fragment of the arguments."""

    index: int
    id: str | None = _omit_none()
    type: Literal["function"] | None = _omit_none()
    function: DeltaFunction


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = _omit_none()
    content: str | None = _omit_none()
    tool_calls: list[DeltaToolCall] | None = _omit_none()


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
    conversation_id: str | None = _omit_none()
    citations: list[Citation] | None = _omit_none()


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: TextLogprobs | None = None
    finish_reason: str | None = None


class Completion(BaseModel):
    """A text completion, and (with object "text_completion" too) one event of its stream."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[Embedding]
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ragway"
    root: str = Field(description="The model this id serves: itself, or the model an alias stands for.")
    max_model_len: int | None = Field(description="Context length; null while no replica answers.")
    dtype: str | None = Field(None, description="Weight dtype the model service runs.")
    mode: Literal["chat", "embedding"] = Field(
        "chat", description="What the model is for, as LiteLLM's model_info.mode: chat or embedding."
    )
    dimensions: int | None = Field(None, description="An embedding model's vector dimension.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ConversationSummary(BaseModel):
    id: str
    title: str
    model: str
    created_at: int
    updated_at: int


class ConversationMessage(BaseModel):
    id: str
    role: str
    content: str
    created_at: int
    status: str
    finish_reason: str | None = None
    citations: list[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None
    tool_calls: list[dict[str, str]] | None = Field(None, description="Assistant turns: the calls made.")
    tool_call_id: str | None = Field(None, description="Tool turns: the call answered.")
    metadata: dict[str, str] | None = Field(None, description="The request's metadata, on the answer.")


class ConversationDetail(ConversationSummary):
    messages: list[ConversationMessage]


class ConversationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConversationSummary]
    has_more: bool
    last_id: str | None = None


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True


class Me(BaseModel):
    id: str
    name: str
    role: str
    credits: float


class UsageDayOut(BaseModel):
    """One model on one UTC day, from the request records."""

    date: str
    model: str
    requests: int
    errors: int = Field(description="Requests that failed (not the ones the client abandoned).")
    prompt_tokens: int
    completion_tokens: int
    cost: float
    ttft_p50_ms: int | None = Field(description="Median time to the first token, in milliseconds.")
    ttft_p95_ms: int | None = Field(description="95th percentile time to the first token, in milliseconds.")
    output_tokens_per_second: float | None = Field(
        description="Decode speed: tokens after the first over the time from the first token to the end."
    )


class UsageOut(BaseModel):
    object: Literal["usage"] = "usage"
    credits: float
    data: list[UsageDayOut]


class AdminUsageOut(BaseModel):
    """Usage of one user, one key, or (neither given) everyone."""

    object: Literal["usage"] = "usage"
    user_id: str | None
    key_id: str | None
    data: list[UsageDayOut]


# -- admin API -------------------------------------------------------------------------------------


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "user"] = "user"
    credits: float = Field(0.0, ge=0, le=1e9)


class UserOut(BaseModel):
    id: str
    name: str
    role: str
    credits: float
    created_at: int
    disabled: bool


class UserList(BaseModel):
    object: Literal["list"] = "list"
    data: list[UserOut]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=64)
    name: str = Field("", max_length=200)
    expires_at: int | None = Field(None, ge=0, le=2**40, description="Unix seconds.")
    rpm_limit: int | None = Field(None, ge=1, le=10**9)
    tpm_limit: int | None = Field(None, ge=1, le=10**12)
    budget: float | None = Field(None, ge=0, le=1e9, description="Credits per budget_period.")
    budget_period: Literal["day", "month"] = "month"


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200)
    rpm_limit: int | None = Field(None, ge=1, le=10**9)
    tpm_limit: int | None = Field(None, ge=1, le=10**12)
    budget: float | None = Field(None, ge=0, le=1e9)
    budget_period: Literal["day", "month"] | None = None
    expires_at: int | None = Field(None, ge=0, le=2**40)


class KeyOut(BaseModel):
    id: str
    user_id: str
    name: str
    display: str = Field(description="The prefix and the last four characters, never the whole key.")
    created_at: int
    expires_at: int | None
    revoked: bool
    rpm_limit: int | None
    tpm_limit: int | None
    budget: float | None
    budget_period: str


class KeyCreated(KeyOut):
    key: str = Field(description="The whole key. Shown this once; store it now.")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyOut]


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: float = Field(gt=0, le=1e9, description="Credits to add.")


class TopUpOut(BaseModel):
    id: int
    user_id: str
    amount: float
    balance: float | None
    created_at: int


# -- collections, documents, search, embeddings ----------------------------------------------------


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    shared: bool = Field(False, description="Readable by every user (admins only).")
    index: IndexOptions | None = Field(None, description="Index parameters; unset = the backend's defaults.")
    embedding_model: str | None = Field(
        None,
        max_length=256,
        description="Embedding model to build it with (see /v1/models); unset = the default.",
    )


class CollectionOut(BaseModel):
    name: str
    shared: bool
    owned: bool
    document_count: int
    vector_count: int
    created_at: int
    index: IndexOptions | None = Field(None, description="Index parameters in effect (unset = defaults).")
    hybrid: bool = Field(False, description="Holds sparse (BM25) vectors: sparse and hybrid search work.")
    embedding_model: str = Field(
        "", description="The embedding model it was built with; every query uses it."
    )


class CollectionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CollectionOut]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, min_length=1, max_length=256)
    text: str = Field(min_length=1)
    content_type: Literal["text/plain", "text/markdown", "text/html"] = "text/plain"
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[DocumentIn] = Field(min_length=1, max_length=100)


class DocumentReplace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    content_type: Literal["text/plain", "text/markdown", "text/html"] = "text/plain"
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentWritten(BaseModel):
    id: str
    filename: str | None = None
    chunks: int
    status: Literal["created", "updated", "unchanged"]


class DocumentWrittenList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentWritten]


class DocumentSummaryOut(BaseModel):
    id: str
    chunks: int
    metadata: dict[str, Any]


class DocumentSummaryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentSummaryOut]
    has_more: bool
    last_id: str | None = None


class ChunkOut(BaseModel):
    index: int
    text: str


class DocumentOut(BaseModel):
    id: str
    metadata: dict[str, Any]
    chunks: list[ChunkOut]


class SearchIn(SearchTuning):
    query: str = Field(min_length=1, max_length=10_000)
    top_k: int = Field(5, ge=1, le=100)
    filter: dict[str, Any] | None = None
    min_score: float | None = Field(None, ge=-1.0, le=1.0)
    embedding_model: str | None = Field(
        None,
        max_length=256,
        description="The embedding model the caller means; a 400 unless the collection was built with it.",
    )


class SearchOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[Citation]


class EmbeddingRequest(_Strict):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(description="One text or up to 2048 texts.")
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _texts(cls, value: str | list[str]) -> list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts or len(texts) > 2048 or any(not t for t in texts):
            raise ValueError("input takes 1-2048 non-empty strings")
        return texts
