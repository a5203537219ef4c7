"""Request, response and stream-event types of the Responses API, as OpenAI and the Open Responses
specification shape them.

Requests are strict: a field ragway does not know is a 400 naming it, and a known field ragway
does not honour is a 400 naming it with the reason (REFUSED) — never accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ragway.core.limits import MAX_FUSION_WEIGHT
from ragway.gateway.completion.protocol import StreamOptions
from ragway.gateway.core.wire import Metadata, PromptCaching, StrictModel
from ragway.gateway.vector_stores.protocol import VectorStoreRanking

# Fields of OpenAI's ResponseCreateParams that ragway refuses (any value but null), and why.
REFUSED = {
    "background": "background responses are not supported; stream instead",
    "prompt": "stored prompt templates live on OpenAI's side; send instructions and input",
    "reasoning": "the served model does not reason in a separate channel",
    "max_tool_calls": "the model service does not cap tool calls; use parallel_tool_calls: false for one",
    "context_management": "ragway manages the context itself (it trims the oldest history to fit)",
    "prompt_cache_options": "vLLM's prefix cache takes no per-request options",
    "moderation": "ragway runs no moderation model",
    "background_options": "background responses are not supported",
    "access_programs": "ragway has no access programs",
    "image": "the served model makes text only",
}
# Tool types the gateway serves, and the fields each takes (beside `type`).
TOOL_FIELDS = {
    "function": {"name", "description", "parameters", "strict"},
    "file_search": {"vector_store_ids", "max_num_results", "filters", "ranking_options"},
}
TOOL_TYPES = tuple(TOOL_FIELDS)
# Includes ragway serves; OpenAI's others belong to tools it does not have.
Include = Literal["message.output_text.logprobs", "file_search_call.results"]
# file_search results the model is given when the tool does not say (OpenAI's range: 1-50).
FILE_SEARCH_RESULTS = 5


def _refuse(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


# -- input items -----------------------------------------------------------------------------------


class InputText(StrictModel):
    type: Literal["input_text"]
    text: str


class OutputTextIn(StrictModel):
    """Assistant text sent back as input (a previous response's output item)."""

    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None


class RefusalIn(StrictModel):
    type: Literal["refusal"]
    refusal: str


class InputFile(StrictModel):
    """A document sent with a message: the caller's uploaded file (`file_id`) or its bytes
    (`file_data`, a base64 data URL, with `filename`). The gateway reads its text into the message
    (`responses.input_files`), which also checks that one source is given, so that its errors name
    the part (`input.0.content.1`)."""

    type: Literal["input_file"]
    file_id: str | None = Field(None, min_length=1, max_length=64)
    file_data: str | None = Field(None, min_length=1)
    filename: str | None = Field(None, min_length=1, max_length=512)
    file_url: str | None = Field(None, description="Refused: the gateway fetches nothing from the network.")
    detail: str | None = Field(
        None, description="Only auto: ragway reads a file's text; it renders no pages."
    )


class InputImage(BaseModel):
    """An image part: parsed so the refusal can name it (no served model reads images)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["input_image"]


def _text_parts(value: Any, allowed: tuple[str, ...]) -> Any:
    if isinstance(value, list):
        for number, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in allowed:
                raise _refuse(
                    "unsupported_content",
                    f"content part {number} has type {kind!r}; ragway takes {', '.join(allowed)} here "
                    "(the served model reads text only)",
                )
    return value


class MessageItem(StrictModel):
    """A message: `{"role", "content"}` (EasyInputMessage) or `{"type": "message", ...}`."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: (
        str
        | list[
            Annotated[
                InputText | OutputTextIn | RefusalIn | InputFile | InputImage, Field(discriminator="type")
            ]
        ]
    )
    id: str | None = Field(None, max_length=256)
    status: Literal["in_progress", "completed", "incomplete"] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        return _text_parts(value, ("input_text", "output_text", "refusal", "input_file", "input_image"))

    @model_validator(mode="after")
    def _parts_fit_the_role(self) -> MessageItem:
        if isinstance(self.content, list):
            for part in self.content:
                if (self.role == "assistant") != (part.type in ("output_text", "refusal")):
                    raise ValueError(f"a {self.role} message cannot hold {part.type} content")
        return self

    def text(self, documents: Mapping[int, str] | None = None) -> str:
        """The message as the model reads it; `documents` are its input_file parts' text by part
        index, set apart from the text around them by blank lines."""
        if isinstance(self.content, str):
            return self.content
        pieces: list[str] = []
        after_block = False
        for number, part in enumerate(self.content):
            if isinstance(part, InputFile | InputImage):
                # Read before planning (input_files.read), which refuses images.
                pieces.append(("\n\n" if pieces else "") + (documents or {})[number])
                after_block = True
            else:
                text = part.refusal if isinstance(part, RefusalIn) else part.text
                pieces.append(("\n\n" if after_block else "") + text)
                after_block = False
        return "".join(pieces)


class FunctionCallItem(StrictModel):
    """A call the model made earlier, sent back as input."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(max_length=1_000_000)
    id: str | None = Field(None, max_length=256)
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(StrictModel):
    """The result of a call, for the model to read."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=256)
    output: str | list[InputText]
    id: str | None = Field(None, max_length=256)
    status: Literal["in_progress", "completed", "incomplete"] | None = None

    @field_validator("output", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        return _text_parts(value, ("input_text",))

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


def _as_items(value: Any) -> Any:
    """Text input is one user message (so item errors are located in the item list itself)."""
    return [{"type": "message", "role": "user", "content": value}] if isinstance(value, str) else value


def _item_type(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type", "message")
    else:
        kind = getattr(value, "type", None)
    return kind if kind in ("message", "function_call", "function_call_output") else None


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(
        _item_type,
        custom_error_type="unsupported_item",
        custom_error_message=(
            "ragway takes input items of type message, function_call and function_call_output "
            "(item_reference, reasoning and built-in tool items are not supported)"
        ),
    ),
]


# -- tools, tool choice, text format ---------------------------------------------------------------


class HybridSearch(StrictModel):
    """OpenAI's weights of reciprocal rank fusion: ragway's hybrid search, `dense_weight` and
    `sparse_weight` (rag.protocol.HybridOptions) under OpenAI's names."""

    embedding_weight: float = Field(ge=0.0, le=MAX_FUSION_WEIGHT, description="The dense list's weight.")
    text_weight: float = Field(ge=0.0, le=MAX_FUSION_WEIGHT, description="The sparse (BM25) list's weight.")

    @model_validator(mode="after")
    def _some_weight(self) -> HybridSearch:
        if self.embedding_weight == 0 and self.text_weight == 0:
            raise ValueError("embedding_weight and text_weight cannot both be 0")
        return self


class FileSearchRanking(VectorStoreRanking):
    """The file_search tool's ranking_options: the search route's, plus OpenAI's hybrid_search."""

    hybrid_search: HybridSearch | None = None

    @model_validator(mode="after")
    def _one_scale(self) -> FileSearchRanking:
        # A threshold without a mode is a cut on cosine similarity, which makes the search dense
        # (rag.vector_stores.SearchOptions): it would drop the weights without a word.
        if self.hybrid_search is not None and self.score_threshold:
            raise ValueError(
                "score_threshold cuts cosine similarity, a dense-search score, and hybrid_search fuses "
                "ranks: send one or the other"
            )
        return self


class ToolParam(StrictModel):
    """A tool: a function (`name`, `description`, `parameters`, `strict`), or file_search
    (`vector_store_ids`, `max_num_results`, `filters`, `ranking_options`), which the gateway runs
    itself. One model rather than a union, so an error names the parameter (`tools.0.filters`)
    without a union label; a field of the other type is refused by name."""

    type: Literal["function", "file_search"]
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=100_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    vector_store_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, min_length=1, max_length=16
    )
    max_num_results: int | None = Field(None, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: FileSearchRanking | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _served(cls, value: Any) -> Any:
        if value not in TOOL_TYPES:
            raise _refuse(
                "unsupported_tool",
                f"tools of type {value!r} are not supported; ragway serves {', '.join(TOOL_TYPES)} tools",
            )
        return value

    @field_validator(*set().union(*TOOL_FIELDS.values()))
    @classmethod
    def _of_its_type(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        if kind is not None and info.field_name not in TOOL_FIELDS[kind]:
            raise _refuse("unsupported_parameter", f"a {kind} tool takes no {info.field_name}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ToolParam:
        if self.type == "function" and self.name is None:
            raise ValueError("a function tool needs a name")
        if self.type == "file_search" and self.vector_store_ids is None:
            raise ValueError("a file_search tool needs vector_store_ids")
        return self


class ToolChoiceParam(StrictModel):
    """OpenAI's tool_choice: "none" | "auto" | "required" | {"type": "function", "name"}. A mode
    string is read as {"type": mode}, so one model (and one error path) covers both shapes."""

    type: Literal["none", "auto", "required", "function", "file_search"]
    name: str | None = Field(None, min_length=1, max_length=64)

    @field_validator("type", mode="before")
    @classmethod
    def _served(cls, value: Any) -> Any:
        if value == "allowed_tools":
            raise _refuse(
                "unsupported_tool_choice",
                "allowed_tools is not supported; send the allowed tools in `tools`, or name one function",
            )
        return value

    @model_validator(mode="after")
    def _named(self) -> ToolChoiceParam:
        if (self.type == "function") != (self.name is not None):
            raise ValueError(
                'a function tool_choice is {"type": "function", "name": ...}; a mode has no name'
            )
        return self

    def reported(self) -> str | dict[str, Any]:
        if self.type == "function":
            return {"type": "function", "name": self.name}
        return {"type": "file_search"} if self.type == "file_search" else self.type


def _tool_choice(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class TextFormatText(StrictModel):
    type: Literal["text"]


class TextFormatJsonObject(StrictModel):
    type: Literal["json_object"]


class TextFormatJsonSchema(StrictModel):
    type: Literal["json_schema"]
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[
    TextFormatText | TextFormatJsonObject | TextFormatJsonSchema, Field(discriminator="type")
]


class TextParam(StrictModel):
    format: TextFormat | None = None


# -- the request -----------------------------------------------------------------------------------


class ConversationRef(StrictModel):
    id: str = Field(min_length=1, max_length=64)


class CreateResponseRequest(PromptCaching):
    """POST /v1/responses."""

    model: str = Field(min_length=1, max_length=256)
    input: Annotated[list[InputItem], BeforeValidator(_as_items)] = Field(
        description="Text (one user message) or input items."
    )
    instructions: str | None = Field(None, description="A system message for this response only.")
    previous_response_id: str | None = Field(
        None, max_length=64, description="Continue the conversation that response belongs to."
    )
    conversation: str | ConversationRef | None = Field(
        None, description="Continue this stored conversation (the chat API's and the UI's history)."
    )
    store: bool = Field(True, description="Keep the exchange in the history (as OpenAI: on).")
    tools: list[ToolParam] | None = Field(None, max_length=128)
    tool_choice: Annotated[ToolChoiceParam | None, BeforeValidator(_tool_choice)] = Field(
        None, description='"none", "auto", "required" or {"type": "function", "name": ...}'
    )
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    include: list[Include] | None = Field(
        None,
        description="message.output_text.logprobs and file_search_call.results; the other includes "
        "need tools ragway lacks.",
    )
    truncation: Literal["auto"] | None = Field(
        None, description="ragway trims the oldest history to fit the context: only auto."
    )
    metadata: Metadata | None = Field(None, description="Up to 16 pairs, kept with a stored response.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256, description="End-user id; logged.")
    safety_identifier: str | None = Field(None, max_length=256, description="As `user`.")
    # Known and refused: any value but null is a 400 with the reason (REFUSED).
    background: Any = Field(None, description=REFUSED["background"])
    prompt: Any = Field(None, description=REFUSED["prompt"])
    reasoning: Any = Field(None, description=REFUSED["reasoning"])
    max_tool_calls: Any = Field(None, description=REFUSED["max_tool_calls"])
    context_management: Any = Field(None, description=REFUSED["context_management"])
    prompt_cache_options: Any = Field(None, description=REFUSED["prompt_cache_options"])
    moderation: Any = Field(None, description=REFUSED["moderation"])
    background_options: Any = Field(None, description=REFUSED["background_options"])
    access_programs: Any = Field(None, description=REFUSED["access_programs"])
    image: Any = Field(None, description=REFUSED["image"])

    @field_validator(*REFUSED, mode="before")
    @classmethod
    def _refused(cls, value: Any, info: Any) -> Any:
        # background: false asks for what ragway does anyway.
        if value is None or (info.field_name == "background" and value is False):
            return None
        raise _refuse("unsupported_parameter", f"unsupported parameter: {REFUSED[info.field_name]}")

    @field_validator("input")
    @classmethod
    def _some_input(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("input must not be empty")
        if len(value) > 1000:
            raise ValueError("input takes up to 1000 items")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CreateResponseRequest:
        if self.tool_choice is not None and self.tool_choice.type != "none" and not self.tools:
            raise ValueError("tool_choice needs tools")
        if (
            self.tool_choice is not None
            and self.tool_choice.name
            and self.tool_choice.name not in {t.name for t in self.tools or []}
        ):
            raise ValueError(f"tool_choice names {self.tool_choice.name!r}, which is not in tools")
        searches = [t for t in self.tools or [] if t.type == "file_search"]
        if len(searches) > 1:
            raise ValueError("one file_search tool per request; it takes several vector_store_ids")
        if self.tool_choice is not None and self.tool_choice.type == "file_search" and not searches:
            raise ValueError("tool_choice file_search needs a file_search tool")
        if self.previous_response_id and self.conversation is not None:
            raise ValueError("previous_response_id and conversation cannot both be given")
        if self.top_logprobs and not self.logprobs:
            raise ValueError('top_logprobs needs include: ["message.output_text.logprobs"]')
        return self

    @property
    def logprobs(self) -> bool:
        return "message.output_text.logprobs" in (self.include or [])

    @property
    def file_search(self) -> ToolParam | None:
        """The file_search tool the gateway runs before generating; none when tool_choice is none."""
        if self.tool_choice is not None and self.tool_choice.type == "none":
            return None
        return next((t for t in self.tools or [] if t.type == "file_search"), None)

    @property
    def conversation_id(self) -> str | None:
        return self.conversation.id if isinstance(self.conversation, ConversationRef) else self.conversation


# -- the response object ---------------------------------------------------------------------------


class TopLogProb(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class LogProb(TopLogProb):
    top_logprobs: list[TopLogProb] = Field(default_factory=list)


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[LogProb] = Field(default_factory=list)


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class FunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]


class FileSearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any] = Field(default_factory=dict)
    text: str
    # Null in responses stored before ragway reported it.
    vector_store_id: str | None = Field(None, description="The vector store the result came from.")


class FileSearchCall(BaseModel):
    type: Literal["file_search_call"] = "file_search_call"
    id: str
    status: Literal["in_progress", "searching", "completed", "incomplete", "failed"]
    queries: list[str]
    results: list[FileSearchResult] | None = Field(
        None, description='Only with include: ["file_search_call.results"].'
    )


OutputItem = Annotated[OutputMessage | FunctionCall | FileSearchCall, Field(discriminator="type")]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class ResponseError(BaseModel):
    code: str
    message: str


class IncompleteDetails(BaseModel):
    reason: str


class FunctionTool(BaseModel):
    type: Literal["function"] = "function"
    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool | None


class FileSearchTool(BaseModel):
    type: Literal["file_search"] = "file_search"
    vector_store_ids: list[str]
    max_num_results: int
    filters: dict[str, Any] | None
    ranking_options: dict[str, Any]


Tool = Annotated[FunctionTool | FileSearchTool, Field(discriminator="type")]


class ConversationOut(BaseModel):
    id: str


class Response(BaseModel):
    """The response object: every field the Open Responses schema requires, in OpenAI's shape."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    completed_at: int | None = None
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    incomplete_details: IncompleteDetails | None = None
    error: ResponseError | None = None
    model: str
    previous_response_id: str | None = None
    instructions: str | None = None
    output: list[OutputItem] = Field(default_factory=list)
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    truncation: Literal["auto"] = "auto"
    parallel_tool_calls: bool = True
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    temperature: float = 1.0
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int = 0
    reasoning: dict[str, Any] | None = None
    usage: ResponseUsage | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    store: bool = True
    background: bool = False
    service_tier: str = "default"
    metadata: dict[str, str] = Field(default_factory=dict)
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    user: str | None = None
    conversation: ConversationOut | None = Field(None, description="ragway: where the exchange is stored.")

    @property
    def output_text(self) -> str:
        return "".join(
            c.text for item in self.output if isinstance(item, OutputMessage) for c in item.content
        )


# -- input items listing ---------------------------------------------------------------------------


class InputMessageOut(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["completed"] = "completed"
    role: str
    content: list[dict[str, Any]]


class FunctionCallOutputOut(BaseModel):
    type: Literal["function_call_output"] = "function_call_output"
    id: str
    call_id: str
    output: str
    status: Literal["completed"] = "completed"


InputItemOut = InputMessageOut | FunctionCall | FunctionCallOutputOut


class InputItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[InputItemOut]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


# -- stream events ---------------------------------------------------------------------------------


class StreamEvent(BaseModel):
    """One semantic event of a streamed response, as the Open Responses specification shapes it
    (responses.serving.EventWriter sends them in order)."""

    type: str
    sequence_number: int = Field(0, description="Set by the writer as it sends the event: 0, 1, 2...")


class ResponseStateEvent(StreamEvent):
    """The whole response as it stands when it starts or ends."""

    response: Response


class ResponseCreatedEvent(ResponseStateEvent):
    type: Literal["response.created"] = "response.created"


class ResponseInProgressEvent(ResponseStateEvent):
    type: Literal["response.in_progress"] = "response.in_progress"


class ResponseCompletedEvent(ResponseStateEvent):
    type: Literal["response.completed"] = "response.completed"


class ResponseIncompleteEvent(ResponseStateEvent):
    type: Literal["response.incomplete"] = "response.incomplete"


class ResponseFailedEvent(ResponseStateEvent):
    type: Literal["response.failed"] = "response.failed"


class OutputItemEvent(StreamEvent):
    """An output item as it opens (empty, in progress) or closes (whole)."""

    output_index: int
    item: OutputItem


class OutputItemAddedEvent(OutputItemEvent):
    type: Literal["response.output_item.added"] = "response.output_item.added"


class OutputItemDoneEvent(OutputItemEvent):
    type: Literal["response.output_item.done"] = "response.output_item.done"


class ItemEvent(StreamEvent):
    """An event inside one output item."""

    item_id: str
    output_index: int


class FileSearchCallInProgressEvent(ItemEvent):
    type: Literal["response.file_search_call.in_progress"] = "response.file_search_call.in_progress"


class FileSearchCallSearchingEvent(ItemEvent):
    type: Literal["response.file_search_call.searching"] = "response.file_search_call.searching"


class FileSearchCallCompletedEvent(ItemEvent):
    type: Literal["response.file_search_call.completed"] = "response.file_search_call.completed"


class FunctionCallArgumentsDeltaEvent(ItemEvent):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    delta: str


class FunctionCallArgumentsDoneEvent(ItemEvent):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    name: str
    arguments: str


class ContentEvent(ItemEvent):
    """An event inside one content part of a message (ragway's messages have one: index 0)."""

    content_index: int = 0


class ContentPartEvent(ContentEvent):
    """A content part as it opens (empty) or closes (whole)."""

    part: OutputText


class ContentPartAddedEvent(ContentPartEvent):
    type: Literal["response.content_part.added"] = "response.content_part.added"


class ContentPartDoneEvent(ContentPartEvent):
    type: Literal["response.content_part.done"] = "response.content_part.done"


class OutputTextDeltaEvent(ContentEvent):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    delta: str
    logprobs: list[LogProb]


class OutputTextAnnotationAddedEvent(ContentEvent):
    type: Literal["response.output_text.annotation.added"] = "response.output_text.annotation.added"
    annotation_index: int
    annotation: dict[str, Any]


class OutputTextDoneEvent(ContentEvent):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    text: str
    logprobs: list[LogProb]
