"""The Responses API's wire format on the generation core: a request becomes a `ChatPlan`, a run
comes back as a response object or as the semantic stream events, and a stored exchange is
rebuilt into the same response object.

Item ids are derived from the response id (`msg_<hex>`, `fc_<hex>_<n>`, `fs_<hex>`), so the
object a stream ends with, the non-streamed body and `GET /v1/responses/{id}` name the same items.
A file_search call (`file_search.py`) is the first output item, before the answer it grounds.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragway.core.errors import InvalidArgument, RagwayError
from ragway.gateway.clients.model import (
    ChoiceDelta,
    SampledToken,
    Sampling,
    Tool,
    ToolCallDelta,
    ToolChoice,
)
from ragway.gateway.conversations.history import ToolCall, Turn
from ragway.gateway.core.errors import http_error
from ragway.gateway.core.tables import Message
from ragway.gateway.generation.service import ChatPlan, Generation, GenerationService, Progress
from ragway.gateway.responses import file_search
from ragway.gateway.responses.input_files import Documents
from ragway.gateway.responses.protocol import (
    ContentPartAddedEvent,
    ContentPartDoneEvent,
    ConversationOut,
    CreateResponseRequest,
    FileSearchCallCompletedEvent,
    FileSearchCallInProgressEvent,
    FileSearchCallSearchingEvent,
    FunctionCall,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionCallOutputOut,
    FunctionTool,
    IncompleteDetails,
    InputItemOut,
    InputMessageOut,
    InputTokensDetails,
    LogProb,
    MessageItem,
    OutputItem,
    OutputItemAddedEvent,
    OutputItemDoneEvent,
    OutputMessage,
    OutputText,
    OutputTextAnnotationAddedEvent,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseError,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseUsage,
    StreamEvent,
    TextFormatJsonObject,
    TextFormatJsonSchema,
    ToolParam,
    TopLogProb,
)
from ragway.gateway.responses.store import Exchange

# Sent by `stream` once the model service admitted the request (see serving.ADMITTED).
ADMITTED = ""
# Fields the generation core names in its errors, as this API calls them.
FIELDS = {"messages": "input", "json_schema": "text.format.schema", "max_tokens": "max_output_tokens"}


def new_response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def _hex(response_id: str) -> str:
    return response_id.removeprefix("resp_")


def message_item_id(response_id: str, number: int = 0) -> str:
    return f"msg_{_hex(response_id)}" + (f"_{number}" if number else "")


def call_item_id(response_id: str, index: int) -> str:
    return f"fc_{_hex(response_id)}_{index}"


def renamed(exc: RagwayError) -> RagwayError:
    """An error of the generation core with the parameter named as this API names it."""
    if exc.field in FIELDS:
        exc.field = FIELDS[exc.field]
    return exc


# -- request -> plan -------------------------------------------------------------------------------


def _function_tool(tool: ToolParam) -> tuple[Tool, FunctionTool]:
    assert tool.name is not None  # a function tool has one (protocol.ToolParam)
    return (
        # OpenAI's Responses API makes function tools strict unless told otherwise.
        Tool(tool.name, tool.description, tool.parameters, strict=tool.strict is not False),
        FunctionTool(
            name=tool.name,
            description=tool.description,
            parameters=tool.parameters,
            strict=tool.strict is not False,
        ),
    )


def turns_of(req: CreateResponseRequest, documents: Documents | None = None) -> tuple[list[Turn], list[Turn]]:
    """The input as (system turns, conversation turns), each input_file's text (`documents`, as
    input_files.read found it) in its message. A function_call item joins the assistant turn right
    before it, so parallel calls (and text before them) are one assistant turn."""
    system: list[Turn] = []
    turns: list[Turn] = []
    joinable = False  # the last turn is an assistant turn a function_call may join
    for number, item in enumerate(req.input):
        if isinstance(item, MessageItem):
            text = item.text({j: doc for (i, j), doc in (documents or {}).items() if i == number})
            if item.role in ("system", "developer"):
                system.append(Turn("system", text))
                joinable = False
            else:
                turns.append(Turn(item.role, text))
                joinable = item.role == "assistant"
        elif isinstance(item, FunctionCallItem):
            call = ToolCall(item.call_id, item.name, item.arguments)
            if joinable:
                last = turns.pop()
                turns.append(Turn("assistant", last.content, tool_calls=(*last.tool_calls, call)))
            else:
                turns.append(Turn("assistant", "", tool_calls=(call,)))
            joinable = True
        elif isinstance(item, FunctionCallOutputItem):
            turns.append(Turn("tool", item.text(), tool_call_id=item.call_id))
            joinable = False
    if not turns:
        raise InvalidArgument(
            "input needs a user message (system and developer items alone are not a turn)", field="input"
        )
    return system, turns


def _sampling(req: CreateResponseRequest) -> Sampling:
    fmt = req.text.format if req.text is not None else None
    return Sampling(
        temperature=req.temperature,
        top_p=req.top_p,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        logprobs=req.top_logprobs or 0 if req.logprobs else None,
        json_schema=fmt.schema_ if isinstance(fmt, TextFormatJsonSchema) else None,
        json_object=isinstance(fmt, TextFormatJsonObject),
    )


def _text_field(req: CreateResponseRequest) -> dict[str, Any]:
    fmt = req.text.format if req.text is not None else None
    if isinstance(fmt, TextFormatJsonSchema):
        return {
            "format": {
                "type": "json_schema",
                "name": fmt.name,
                "description": fmt.description,
                "schema": fmt.schema_,
                "strict": bool(fmt.strict),
            }
        }
    return {"format": {"type": fmt.type if fmt is not None else "text"}}


def plan_response(
    req: CreateResponseRequest,
    response_id: str,
    conversation_id: str | None,
    history_until: int | None = None,
    documents: Documents | None = None,
) -> ChatPlan:
    """The generation the request asks for; `conversation_id` is the history it continues (up to
    the message `history_until`, when given); `documents` the text of its input files."""
    system, turns = turns_of(req, documents)
    if req.instructions:
        system.insert(0, Turn("system", req.instructions))
    # Function tools go to the model service; the gateway runs file_search itself (the route).
    tools, reported = [], []
    for tool in req.tools or []:
        if tool.type == "function":
            sent, shown = _function_tool(tool)
            tools.append(sent)
            reported.append(shown.model_dump())
        else:
            reported.append(file_search.reported(tool).model_dump())
    choice, name = (req.tool_choice.type, req.tool_choice.name) if req.tool_choice else (None, None)
    if choice in ("required", "file_search") and req.file_search is not None:
        choice = "auto"  # the search is the call asked for; the model may still call a function
    tool_choice = None
    if choice == "function":
        tool_choice = ToolChoice("named", name or "")
    elif choice in ("none", "auto", "required") and (tools or choice == "none"):
        tool_choice = ToolChoice(choice)
    # The response object's own fields: reported while it runs and kept with the stored answer.
    fields = {
        "created_at": int(time.time()),
        "instructions": req.instructions,
        "system": [t.content for t in system[1 if req.instructions else 0 :]],
        "previous_response_id": req.previous_response_id,
        "tools": reported,
        "tool_choice": req.tool_choice.reported() if req.tool_choice is not None else "auto",
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "text": _text_field(req),
        "temperature": req.temperature,
        "top_p": req.top_p,
        "presence_penalty": req.presence_penalty,
        "frequency_penalty": req.frequency_penalty,
        "top_logprobs": req.top_logprobs,
        "logprobs": req.logprobs,
        "max_output_tokens": req.max_output_tokens,
        "store": req.store,
        "metadata": req.metadata,
        "prompt_cache_key": req.prompt_cache_key,
        "safety_identifier": req.safety_identifier,
        "user": req.user,
    }
    return ChatPlan(
        id=response_id,
        endpoint="responses",
        system=system,
        turns=turns,
        sampling=_sampling(req),
        token_limit=req.max_output_tokens,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=req.parallel_tool_calls,
        conversation_id=conversation_id,
        history_until=history_until,
        store=req.store,
        metadata=req.metadata,
        response=fields,
        cache_key=req.prompt_cache_key,
    )


# -- run -> response object ------------------------------------------------------------------------


def response_object(
    response_id: str,
    model: str,
    fields: dict[str, Any],
    *,
    status: str,
    output: Sequence[OutputItem] = (),
    usage: ResponseUsage | None = None,
    error: ResponseError | None = None,
    incomplete: IncompleteDetails | None = None,
    completed_at: int | None = None,
    conversation_id: str | None = None,
) -> Response:
    def number(name: str, default: float) -> float:
        value = fields.get(name)
        return default if value is None else float(value)

    return Response(
        id=response_id,
        created_at=int(fields.get("created_at") or time.time()),
        completed_at=completed_at,
        status=status,  # type: ignore[arg-type]
        incomplete_details=incomplete,
        error=error,
        model=model,
        previous_response_id=fields.get("previous_response_id"),
        instructions=fields.get("instructions"),
        output=list(output),
        tools=fields.get("tools") or [],
        tool_choice=fields.get("tool_choice") or "auto",
        parallel_tool_calls=fields.get("parallel_tool_calls", True),
        text=fields.get("text") or {"format": {"type": "text"}},
        temperature=number("temperature", 1.0),
        top_p=number("top_p", 1.0),
        presence_penalty=number("presence_penalty", 0.0),
        frequency_penalty=number("frequency_penalty", 0.0),
        top_logprobs=int(fields.get("top_logprobs") or 0),
        usage=usage,
        max_output_tokens=fields.get("max_output_tokens"),
        store=fields.get("store", True),
        metadata=fields.get("metadata") or {},
        safety_identifier=fields.get("safety_identifier"),
        prompt_cache_key=fields.get("prompt_cache_key"),
        user=fields.get("user"),
        conversation=ConversationOut(id=conversation_id) if conversation_id else None,
    )


def _logprobs(items: Sequence[SampledToken]) -> list[LogProb]:
    return [
        LogProb(
            token=i.token,
            logprob=i.logprob,
            bytes=list(i.token.encode()),
            top_logprobs=[
                TopLogProb(token=t.token, logprob=t.logprob, bytes=list(t.token.encode())) for t in i.top
            ],
        )
        for i in items
    ]


def output_items(
    response_id: str,
    text: str,
    calls: Sequence[ToolCall],
    item_status: str,
    logprobs: list[LogProb] | None = None,
    *,
    search: dict[str, Any] | None = None,
    sources: Sequence[dict[str, Any]] = (),
) -> list[OutputItem]:
    """The answer as output items: the file_search call it was grounded in (`search`, as
    `file_search.search` kept it), its text as one message (when there is text, or nothing else)
    annotated with the `sources` it cites, then one function_call item per call."""
    items: list[OutputItem] = [file_search.call_item(response_id, search)] if search is not None else []
    if text or not calls:
        items.append(
            OutputMessage(
                id=message_item_id(response_id),
                status=item_status,  # type: ignore[arg-type]
                content=[
                    OutputText(
                        text=text,
                        annotations=file_search.file_citations(text, sources),
                        logprobs=logprobs or [],
                    )
                ],
            )
        )
    items.extend(
        FunctionCall(
            id=call_item_id(response_id, index),
            call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            status="completed",
        )
        for index, call in enumerate(calls)
    )
    return items


def usage_of(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=prompt_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=cached_tokens),
        output_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def outcome(status: str, finish_reason: str | None) -> tuple[str, IncompleteDetails | None]:
    """The response status for how the run ended: a length stop is incomplete (max_output_tokens),
    a run that never finished (the client left, shutdown) is incomplete too."""
    if status == "failed":
        return "failed", None
    if status != "ok":
        return "incomplete", IncompleteDetails(reason="interrupted")
    if finish_reason == "length":
        return "incomplete", IncompleteDetails(reason="max_output_tokens")
    return "completed", None


def _progress_usage(progress: Progress) -> ResponseUsage:
    return usage_of(progress.prompt_tokens, progress.completion_tokens, progress.cached_tokens)


def _given(search: dict[str, Any] | None, count: int) -> list[dict[str, Any]]:
    """The file_search results the model was given: the best `count` (prompt fitting may have
    dropped the weakest), numbered as the answer cites them."""
    return list(search["results"][:count]) if search is not None else []


def _sources_of(gen: Generation) -> list[dict[str, Any]]:
    given = len(gen.sources.chunks) if gen.sources is not None else 0
    return _given((gen.response or {}).get("file_search"), given)


def body(gen: Generation, progress: Progress) -> Response:
    """The whole response (non-streaming)."""
    fields = gen.response or {}
    choice = progress.choices[0]
    status, incomplete = outcome(progress.status, choice.finish_reason)
    answer = choice.turn()
    items = output_items(
        gen.id,
        answer.content,
        answer.tool_calls,
        "incomplete" if incomplete else "completed",
        _logprobs(choice.logprobs) if fields.get("logprobs") else None,
        search=fields.get("file_search"),
        sources=_sources_of(gen),
    )
    return response_object(
        gen.id,
        gen.model,
        fields,
        status=status,
        output=items,
        usage=_progress_usage(progress),
        incomplete=incomplete,
        completed_at=int(time.time()),
        conversation_id=gen.conversation_id,
    )


def stored(exchange: Exchange) -> Response:
    """A stored response, rebuilt from its exchange in the conversation history."""
    answer = exchange.answer
    fields = answer.response or {}
    status, incomplete = outcome(answer.status, answer.finish_reason)
    calls = [ToolCall(c["id"], c["name"], c["arguments"]) for c in answer.tool_calls or []]
    usage = answer.usage or {}
    response_id = answer.request_id or ""
    return response_object(
        response_id,
        exchange.conversation.model,
        {"created_at": answer.created_at, **fields},
        status=status,
        output=output_items(
            response_id,
            answer.content,
            calls,
            "incomplete" if incomplete else "completed",
            search=fields.get("file_search"),
            sources=_given(fields.get("file_search"), len(answer.citations or [])),
        ),
        usage=usage_of(
            usage.get("prompt_tokens", 0),
            usage.get("completion_tokens", 0),
            (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
        ),
        error=ResponseError(code="server_error", message="the model service failed")
        if status == "failed"
        else None,
        incomplete=incomplete,
        completed_at=answer.created_at if status != "failed" else None,
        conversation_id=exchange.conversation.id,
    )


def input_items(exchange: Exchange) -> list[InputItemOut]:
    """What the request sent, as input items, oldest first: its system and developer items
    (instructions are not items), then the turns it added to the conversation."""
    response_id = exchange.answer.request_id or ""
    fields = exchange.answer.response or {}
    items: list[InputItemOut] = [
        InputMessageOut(
            id=f"{message_item_id(response_id)}_system{n}",
            role="system",
            content=[{"type": "input_text", "text": text}],
        )
        for n, text in enumerate(fields.get("system") or [])
    ]
    for m in exchange.prompt:
        items.extend(_input_items_of(m))
    return items


def _input_items_of(m: Message) -> list[InputItemOut]:
    if m.role == "tool":
        return [FunctionCallOutputOut(id=m.id, call_id=m.tool_call_id or "", output=m.content)]
    kind = "output_text" if m.role == "assistant" else "input_text"
    part: dict[str, Any] = {"type": kind, "text": m.content}
    if kind == "output_text":
        part["annotations"] = []
    out: list[InputItemOut] = []
    if m.content or not m.tool_calls:
        out.append(InputMessageOut(id=m.id, role=m.role, content=[part]))
    out.extend(
        FunctionCall(
            id=f"fc_{m.id.removeprefix('msg_')}_{n}",
            call_id=c["id"],
            name=c["name"],
            arguments=c["arguments"],
            status="completed",
        )
        for n, c in enumerate(m.tool_calls or [])
    )
    return out


# -- the event stream ------------------------------------------------------------------------------


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


@dataclass
class _Open:
    """The output item being streamed: a message, or the call with this tool-call index."""

    output_index: int
    item_id: str
    call_index: int | None = None  # None: a message
    text: list[str] = field(default_factory=list)
    logprobs: list[LogProb] = field(default_factory=list)
    call_id: str = ""
    name: str = ""


@dataclass
class EventWriter:
    """The semantic events of one response (responses.protocol's StreamEvent models), numbered
    in order, as SSE text.

    created, in_progress; with file_search, its call: output_item.added,
    file_search_call.in_progress, .searching, .completed, output_item.done; per item:
    output_item.added, (content_part.added, output_text.delta..., output_text.annotation.added...,
    output_text.done, content_part.done | function_call_arguments.delta..., .done),
    output_item.done; then completed, incomplete or failed with the whole response.
    """

    gen: Generation
    logprobs: bool
    sequence: int = 0
    items: list[OutputItem] = field(default_factory=list)
    current: _Open | None = None
    messages: int = 0  # message items opened so far (the second gets its own id)

    def event(self, event: StreamEvent) -> str:
        """The event as SSE text, numbered next."""
        event.sequence_number = self.sequence
        self.sequence += 1
        return f"event: {event.type}\ndata: {_dumps(event.model_dump(mode='json'))}\n\n"

    def snapshot(self, status: str, **extra: Any) -> Response:
        return response_object(
            self.gen.id,
            self.gen.model,
            self.gen.response or {},
            status=status,
            output=self.items,
            conversation_id=self.gen.conversation_id,
            **extra,
        )

    def start(self) -> str:
        return (
            self.event(ResponseCreatedEvent(response=self.snapshot("in_progress")))
            + self.event(ResponseInProgressEvent(response=self.snapshot("in_progress")))
            + self._file_search()
        )

    def _file_search(self) -> str:
        """The file_search call's events. The search ran before the response started (so its
        errors are status codes), so they come at once, in the order OpenAI streams them."""
        search = (self.gen.response or {}).get("file_search")
        if search is None:
            return ""
        call = file_search.call_item(self.gen.id, search)
        index = len(self.items)
        added = call.model_copy(update={"status": "in_progress", "queries": [], "results": None})
        out = [self.event(OutputItemAddedEvent(output_index=index, item=added))]
        for stage in (
            FileSearchCallInProgressEvent,
            FileSearchCallSearchingEvent,
            FileSearchCallCompletedEvent,
        ):
            out.append(self.event(stage(item_id=call.id, output_index=index)))
        out.append(self.event(OutputItemDoneEvent(output_index=index, item=call)))
        self.items.append(call)
        return "".join(out)

    def _open_message(self) -> str:
        item_id = message_item_id(self.gen.id, self.messages)
        self.messages += 1
        self.current = _Open(len(self.items), item_id)
        index = self.current.output_index
        item = OutputMessage(id=item_id, status="in_progress", content=[])
        return self.event(OutputItemAddedEvent(output_index=index, item=item)) + self.event(
            ContentPartAddedEvent(item_id=item_id, output_index=index, part=OutputText(text=""))
        )

    def _open_call(self, call: ToolCallDelta) -> str:
        item_id = call_item_id(self.gen.id, call.index)
        self.current = _Open(len(self.items), item_id, call.index, call_id=call.id, name=call.name)
        item = FunctionCall(id=item_id, call_id=call.id, name=call.name, arguments="", status="in_progress")
        return self.event(OutputItemAddedEvent(output_index=self.current.output_index, item=item))

    def close(self, status: str = "completed") -> str:
        """Finish the open item; its done events."""
        open_, self.current = self.current, None
        if open_ is None:
            return ""
        where: dict[str, Any] = {"item_id": open_.item_id, "output_index": open_.output_index}
        if open_.call_index is None:
            said = "".join(open_.text)
            cited = file_search.file_citations(said, _sources_of(self.gen))
            text = OutputText(text=said, annotations=cited, logprobs=open_.logprobs)
            message = OutputMessage(id=open_.item_id, status=status, content=[text])  # type: ignore[arg-type]
            self.items.append(message)
            return (
                "".join(
                    self.event(
                        OutputTextAnnotationAddedEvent(**where, annotation_index=n, annotation=annotation)
                    )
                    for n, annotation in enumerate(cited)
                )
                + self.event(OutputTextDoneEvent(**where, text=text.text, logprobs=text.logprobs))
                + self.event(ContentPartDoneEvent(**where, part=text))
                + self.event(OutputItemDoneEvent(output_index=open_.output_index, item=message))
            )
        call = FunctionCall(
            id=open_.item_id,
            call_id=open_.call_id,
            name=open_.name,
            arguments="".join(open_.text),
            status="completed",
        )
        self.items.append(call)
        return self.event(
            FunctionCallArgumentsDoneEvent(**where, name=call.name, arguments=call.arguments)
        ) + self.event(OutputItemDoneEvent(output_index=open_.output_index, item=call))

    def delta(self, delta: ChoiceDelta) -> str:
        out = []
        if delta.text:
            if self.current is None or self.current.call_index is not None:
                out.append(self.close())
                out.append(self._open_message())
            assert self.current is not None
            self.current.text.append(delta.text)
            logprobs = _logprobs(delta.logprobs) if self.logprobs else []
            self.current.logprobs.extend(logprobs)
            out.append(
                self.event(
                    OutputTextDeltaEvent(
                        item_id=self.current.item_id,
                        output_index=self.current.output_index,
                        delta=delta.text,
                        logprobs=logprobs,
                    )
                )
            )
        for call in delta.tool_calls:
            if self.current is None or self.current.call_index != call.index:
                out.append(self.close())
                out.append(self._open_call(call))
            assert self.current is not None
            if call.arguments:
                self.current.text.append(call.arguments)
                out.append(
                    self.event(
                        FunctionCallArgumentsDeltaEvent(
                            item_id=self.current.item_id,
                            output_index=self.current.output_index,
                            delta=call.arguments,
                        )
                    )
                )
        return "".join(out)

    def finish(self, progress: Progress) -> str:
        status, incomplete = outcome(progress.status, progress.choices[0].finish_reason)
        out = []
        if not self.items and self.current is None:
            out.append(self._open_message())  # an empty answer is still one (empty) message
        out.append(self.close("incomplete" if incomplete else "completed"))
        final = self.snapshot(
            status,
            usage=_progress_usage(progress),
            incomplete=incomplete,
            completed_at=int(time.time()),
        )
        kind = ResponseCompletedEvent if status == "completed" else ResponseIncompleteEvent
        out.append(self.event(kind(response=final)))
        return "".join(out)

    def fail(self, exc: RagwayError, progress: Progress) -> str:
        out = [self.close("incomplete")]
        code = http_error(exc).code or "server_error"
        final = self.snapshot(
            "failed", usage=_progress_usage(progress), error=ResponseError(code=code, message=exc.message)
        )
        out.append(self.event(ResponseFailedEvent(response=final)))
        return "".join(out)


async def stream(service: GenerationService, gen: Generation) -> AsyncGenerator[str, None]:
    """The response as semantic SSE events (no [DONE]: the stream ends with the last event).

    Yields ADMITTED first, once the model service admitted the request, so the route can turn a
    refusal into its status code before the response starts; then response.created and
    response.in_progress, then the items as the model writes them.
    """
    progress = Progress.of(gen)
    writer = EventWriter(gen, bool((gen.response or {}).get("logprobs")))
    run = service.run(gen, progress)
    admitted = False
    try:
        await anext(run)
        admitted = True
        yield ADMITTED
        yield writer.start()
        async for message in run:
            assert message is not None
            events = "".join(writer.delta(d) for d in message.choices if d.index == 0)
            if events:
                yield events
        yield writer.finish(progress)
    except RagwayError as exc:
        if not admitted:
            raise
        yield writer.fail(exc, progress)
    finally:
        await run.aclose()
