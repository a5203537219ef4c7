"""Chat and text completions in OpenAI's wire format: a request becomes a plan for `generation`
(its `rag` option grounded first: `ground`), and a run comes back as one body or as server-sent
events exactly as OpenAI sends them (`respond`, which `completion` uses too)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import RagwayError
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.catalog.model_router import Route
from ragway.gateway.chat_completion.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatLogprobs,
    ChatMessage,
    Citation,
    DeltaFunction,
    DeltaToolCall,
    FunctionCallOut,
    FunctionTool,
    NamedToolChoice,
    RagOptions,
    ToolCallOut,
)
from ragway.gateway.clients.model import (
    ChoiceDelta,
    SampledToken,
    Sampling,
    TokenCandidate,
    Tool,
    ToolChoice,
)
from ragway.gateway.clients.retrieval import RetrievalClient
from ragway.gateway.completion.protocol import (
    Completion,
    CompletionChoice,
    SamplingFields,
    TextLogprobs,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from ragway.gateway.conversations.history import ToolCall, Turn
from ragway.gateway.core.errors import database_unavailable, error_payload
from ragway.gateway.generation.grounding import Sources
from ragway.gateway.generation.service import ChatPlan, Generation, GenerationService, Progress
from ragway.gateway.rag import filters
from ragway.gateway.rag.query import follow_up_query, rewrite_query
from ragway.gateway.rag.search import Search, run_search

# Sent by `stream` once the model service admitted the request, before any event: the route starts
# the HTTP response on it (a refusal raises before, with its own status) and does not forward it.
ADMITTED = ""


@dataclass(frozen=True)
class Wire:
    """How the answer goes back: which object, streamed or not, with what extras."""

    kind: str  # "chat.completion" | "text_completion"
    stream: bool
    include_usage: bool
    logprobs: bool


def sampling(req: SamplingFields, logprobs: int | None) -> Sampling:
    """The sampling fields both APIs share, as the model service takes them."""
    return Sampling(
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        min_p=req.min_p,
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        repetition_penalty=req.repetition_penalty,
        n=req.n,
        logprobs=logprobs,
        stop=req.stop or [],
        ignore_eos=req.ignore_eos,
        logit_bias={int(token): bias for token, bias in (req.logit_bias or {}).items()},
    )


def function_tools(tools: Sequence[FunctionTool] | None) -> list[Tool]:
    """Chat-completions function tools as the model service takes them (also /tokenize's)."""
    return [
        Tool(t.function.name, t.function.description, t.function.parameters, bool(t.function.strict))
        for t in tools or []
    ]


def chat_turns(messages: Sequence[ChatMessage]) -> tuple[list[Turn], list[Turn]]:
    """A request's messages as the prompt is built from them: the system (and developer) messages,
    which generation renders first, and the conversation. `/tokenize` counts through this too, so
    the tokens it reports are the ones chat sends."""
    system, turns = [], []
    for m in messages:
        if m.role in ("system", "developer"):
            system.append(Turn("system", m.text()))
        else:
            calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or [])
            turns.append(Turn(m.role, m.text(), tool_calls=calls, tool_call_id=m.tool_call_id))
    return system, turns


def plan_chat(req: ChatCompletionRequest) -> ChatPlan:
    params = sampling(req, req.top_logprobs or 0 if req.logprobs else None)
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        params = replace(params, json_object=True)
    elif fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
        params = replace(params, json_schema=fmt.json_schema.schema_ or {"type": "object"})
    tool_choice = None
    if isinstance(req.tool_choice, NamedToolChoice):
        tool_choice = ToolChoice("named", req.tool_choice.function.name)
    elif req.tool_choice is not None:
        tool_choice = ToolChoice(req.tool_choice)
    system, turns = chat_turns(req.messages)
    return ChatPlan(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        endpoint="chat.completions",
        system=system,
        turns=turns,
        sampling=params,
        token_limit=req.token_limit,
        n=req.n,
        tools=function_tools(req.tools),
        tool_choice=tool_choice,
        parallel_tool_calls=req.parallel_tool_calls,
        conversation_id=req.conversation_id,
        store=req.store,
        metadata=req.metadata,
        cache_key=req.prompt_cache_key,
    )


def chat_wire(req: ChatCompletionRequest) -> Wire:
    return Wire("chat.completion", req.stream, req.include_usage, req.logprobs)


def sse(payload: ChatCompletionChunk | Completion | dict[str, object] | str) -> str:
    if isinstance(payload, str):
        return f"data: {payload}\n\n"
    if isinstance(payload, dict):
        return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"
    return f"data: {payload.model_dump_json()}\n\n"


def _chat_logprobs(items: list[SampledToken]) -> ChatLogprobs:
    def top(t: TokenCandidate) -> TopLogprob:
        return TopLogprob(token=t.token, logprob=t.logprob, bytes=list(t.token.encode()))

    return ChatLogprobs(
        content=[
            TokenLogprob(
                token=i.token,
                logprob=i.logprob,
                bytes=list(i.token.encode()),
                top_logprobs=[top(t) for t in i.top],
            )
            for i in items
        ]
    )


def _text_logprobs(items: list[SampledToken]) -> TextLogprobs:
    return TextLogprobs(
        tokens=[i.token for i in items],
        token_logprobs=[i.logprob for i in items],
        top_logprobs=[{t.token: t.logprob for t in i.top} for i in items],
    )


def _citations(gen: Generation, progress: Progress) -> list[Citation] | None:
    if gen.sources is None:
        return None
    return [Citation(**c) for c in gen.sources.citations("".join(progress.choices[0].text))]


def _chat_chunk(gen: Generation, choices: list[ChatChunkChoice], **extra: object) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id=gen.id,
        created=gen.created,
        model=gen.model,
        choices=choices,
        conversation_id=gen.conversation_id,
        **extra,  # type: ignore[arg-type]
    )


def _chunk(gen: Generation, wire: Wire, deltas: list[ChoiceDelta]) -> ChatCompletionChunk | Completion:
    if wire.kind == "chat.completion":
        return _chat_chunk(
            gen,
            [
                ChatChunkChoice(
                    index=d.index,
                    delta=ChatDelta(
                        content=d.text or None,
                        tool_calls=[
                            DeltaToolCall(
                                index=c.index,
                                id=c.id or None,
                                type="function" if c.id else None,
                                function=DeltaFunction(name=c.name or None, arguments=c.arguments),
                            )
                            for c in d.tool_calls
                        ]
                        or None,
                    ),
                    logprobs=_chat_logprobs(d.logprobs) if wire.logprobs else None,
                    finish_reason=d.finish_reason,
                )
                for d in deltas
            ],
        )
    return Completion(
        id=gen.id,
        created=gen.created,
        model=gen.model,
        choices=[
            CompletionChoice(
                index=d.index,
                text=d.text,
                logprobs=_text_logprobs(d.logprobs) if wire.logprobs else None,
                finish_reason=d.finish_reason,
            )
            for d in deltas
        ],
    )


class TextEvents:
    """The SSE event of a text-only delta, by filling a template rendered once per request.

    A streamed answer is mostly events that differ only in a few characters of text; building and
    serialising a pydantic chunk for each is per-token work taken from the engine on a small CPU.
    Deltas with anything else (logprobs, tool calls, a finish reason) take the full path.
    """

    MARK = "\x00"

    def __init__(self, gen: Generation, wire: Wire) -> None:
        self.wire = wire
        self._gen = gen
        self._templates: dict[int, tuple[str, str]] = {}

    def fits(self, delta: ChoiceDelta) -> bool:
        return bool(delta.text) and not (self.wire.logprobs or delta.tool_calls or delta.finish_reason)

    def event(self, delta: ChoiceDelta) -> str:
        template = self._templates.get(delta.index)
        if template is None:
            probe = ChoiceDelta(index=delta.index, text=self.MARK)
            rendered = _chunk(self._gen, self.wire, [probe]).model_dump_json()
            before, after = rendered.split(json.dumps(self.MARK), 1)
            template = self._templates[delta.index] = (f"data: {before}", f"{after}\n\n")
        return template[0] + json.dumps(delta.text, ensure_ascii=False) + template[1]


def _final_usage(gen: Generation, wire: Wire, usage: Usage) -> ChatCompletionChunk | Completion:
    if wire.kind == "chat.completion":
        return _chat_chunk(gen, [], usage=usage)
    return Completion(id=gen.id, created=gen.created, model=gen.model, choices=[], usage=usage)


def body(gen: Generation, wire: Wire, progress: Progress) -> ChatCompletion | Completion:
    """The whole answer in one body (non-streaming)."""
    if wire.kind == "chat.completion":
        return ChatCompletion(
            id=gen.id,
            created=gen.created,
            model=gen.model,
            choices=[
                ChatChoice(
                    index=index,
                    message=AssistantMessage(
                        content=("".join(choice.text) or None) if choice.tool_calls else "".join(choice.text),
                        tool_calls=[
                            ToolCallOut(id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments))
                            for c in (t.done() for t in choice.tool_calls)
                        ]
                        or None,
                    ),
                    logprobs=_chat_logprobs(choice.logprobs) if wire.logprobs else None,
                    finish_reason=choice.finish_reason,
                )
                for index, choice in enumerate(progress.choices)
            ],
            usage=progress.usage(),
            conversation_id=gen.conversation_id,
            citations=_citations(gen, progress),
        )
    return Completion(
        id=gen.id,
        created=gen.created,
        model=gen.model,
        choices=[
            CompletionChoice(
                index=index,
                text="".join(choice.text),
                logprobs=_text_logprobs(choice.logprobs) if wire.logprobs else None,
                finish_reason=choice.finish_reason,
            )
            for index, choice in enumerate(progress.choices)
        ],
        usage=progress.usage(),
    )


async def stream(service: GenerationService, gen: Generation, wire: Wire) -> AsyncGenerator[str, None]:
    """Server-sent events exactly as OpenAI sends them, ending with [DONE].

    Yields ADMITTED first, once the model service admitted the request, so the route can turn a
    refusal into its status code before the response starts. The first real event (the assistant
    role, with the first token) goes out with the first generated token, as vLLM's server sends it:
    the time to first token a client measures is the model's.
    """
    progress = Progress.of(gen)
    run = service.run(gen, progress)
    admitted = False
    started = [False] * gen.n
    text_events = TextEvents(gen, wire)
    try:
        await anext(run)
        admitted = True
        yield ADMITTED
        async for message in run:
            assert message is not None
            events, deltas = [], []
            for delta in message.choices:
                if not (delta.text or delta.finish_reason or delta.tokens or delta.tool_calls):
                    continue
                if wire.kind == "chat.completion" and not started[delta.index]:
                    started[delta.index] = True
                    role = ChatChunkChoice(index=delta.index, delta=ChatDelta(role="assistant", content=""))
                    events.append(sse(_chat_chunk(gen, [role])))
                if len(message.choices) == 1 and text_events.fits(delta):
                    events.append(text_events.event(delta))
                else:
                    deltas.append(delta)
            if deltas:
                events.append(sse(_chunk(gen, wire, deltas)))
            if events:
                yield "".join(events)
        if gen.sources is not None and wire.kind == "chat.completion":
            yield sse(_chat_chunk(gen, [], citations=_citations(gen, progress)))
        if wire.include_usage:
            yield sse(_final_usage(gen, wire, progress.usage()))
        yield sse("[DONE]")
    except RagwayError as exc:
        if not admitted:
            raise
        _, payload = error_payload(exc)
        yield sse(payload)
    except SQLAlchemyError as exc:
        # The database went away mid-stream (the bill is written before the last message): the
        # stream still ends with an error event, not a cut connection. Any other SQL error is a bug.
        unavailable = database_unavailable(exc)
        if not admitted or unavailable is None:
            raise
        _, payload = error_payload(unavailable)
        yield sse(payload)
    finally:
        await run.aclose()


STREAMED = {200: {"content": {"text/event-stream": {}}, "description": "With stream: true, SSE events."}}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body is read, so the next ASGI message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def respond(request: Request, service: GenerationService, gen: Generation, wire: Wire) -> Any:
    """The run as one JSON body or as SSE events; a client that hangs up aborts it."""
    headers = {"X-Conversation-Id": gen.conversation_id} if gen.conversation_id else {}
    if wire.stream:
        events = stream(service, gen, wire)
        # Admission happens in the first step: a refusal raises here, before the response starts,
        # and becomes a 503/429 with Retry-After. The events generator is started, so it is closed
        # (and the request settled) however the response ends.
        if await anext(events) != ADMITTED:
            raise AssertionError("stream() yields ADMITTED first")
        return StreamingResponse(events, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    # A client that hangs up on a non-streaming request aborts its generation in the engine too;
    # cancelling the run settles the bill for the tokens generated so far.
    run = asyncio.ensure_future(service.run_to_end(gen))
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not run.done():
            run.cancel()
    if run.cancelled() or not run.done():
        await asyncio.gather(run, return_exceptions=True)
        return Response(status_code=499)  # nobody reads it: the client is gone
    progress = run.result()
    return JSONResponse(body(gen, wire, progress).model_dump(mode="json"), headers=headers)


async def ground(
    session: AsyncSession,
    retrieval: RetrievalClient,
    principal: Principal,
    options: RagOptions,
    asked: list[str],
    service: GenerationService,
    route: Route,
) -> Sources:
    """The best chunks for the newest of the questions `asked` (the conversation's user turns,
    oldest first) from the collections `options` names and the caller may read."""
    request = Search(
        stores=options.collections,
        queries=[follow_up_query(asked)],
        top_k=options.top_k,
        tuning=options,
        filters=filters.from_collection_filter(options.filter),
        min_score=options.min_score,
        ranker=options.ranking_options.ranker if options.ranking_options else "auto",
        # The query's embedding is billed like a vector store search's.
        billed_as="rag.search",
        rerank_endpoint="rag.rerank",
        filter_field="filter",
        ranker_field="rag.ranking_options.ranker",
    )

    async def standalone(_: list[str]) -> list[str]:
        return [await rewrite_query(service, principal, route, asked)]

    _, chunks = await run_search(
        session,
        retrieval,
        principal,
        request,
        settings=service.settings,
        limiter=service.limiter,
        generation=service,
        rewrite=standalone if options.rewrite_query else None,
    )
    return Sources(tuple(chunks))
