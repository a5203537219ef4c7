"""Request and response types of the gateway's HTTP API: OpenAI's, plus ragway's additions.

Kept apart from the serving logic (as vLLM's entrypoints/openai/protocol.py is), so the OpenAPI
schema — and the fuzzer that reads it — describes exactly what the routes accept.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_MESSAGES = 1000
MAX_STOP = 4


class _Loose(BaseModel):
    """OpenAI clients send fields we do not use (e.g. `tools: []` defaults); ignore, don't fail."""

    model_config = ConfigDict(extra="ignore")


class TextPart(_Loose):
    type: Literal["text"]
    text: str


class ChatMessage(_Loose):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(_Loose):
    include_usage: bool = False


class RagOptions(BaseModel):
    """Ground the answer in these collections (ragway extension)."""

    model_config = ConfigDict(extra="forbid")
    collections: list[str] = Field(min_length=1, max_length=16)
    top_k: int = Field(5, ge=1, le=50)
    filter: dict[str, Any] | None = None
    min_score: float | None = Field(None, ge=-1.0, le=1.0)


class SamplingFields(_Loose):
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
    user: str | None = Field(None, max_length=256)
    stream: bool = False
    stream_options: StreamOptions | None = None

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
    conversation_id: str | None = Field(None, max_length=64, description="Continue a stored conversation.")
    store: bool = Field(True, description="Keep this exchange in the conversation history.")
    rag: RagOptions | None = None

    @model_validator(mode="after")
    def _needs_messages(self) -> ChatCompletionRequest:
        if not self.messages:
            raise ValueError("messages must hold at least one message")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs: true")
        return self

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] = Field(description="Text, a one-element list of text, or token ids.")
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False

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


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ragway"
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Citation(BaseModel):
    index: int
    collection: str
    document_id: str
    chunk_index: int
    score: float
    snippet: str
    metadata: dict[str, Any] = {}


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
    date: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: float


class UsageOut(BaseModel):
    object: Literal["usage"] = "usage"
    credits: float
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


class CollectionOut(BaseModel):
    name: str
    shared: bool
    owned: bool
    document_count: int
    vector_count: int
    created_at: int


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


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=10_000)
    top_k: int = Field(5, ge=1, le=100)
    filter: dict[str, Any] | None = None
    min_score: float | None = Field(None, ge=-1.0, le=1.0)


class SearchOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[Citation]


class EmbeddingRequest(_Loose):
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
