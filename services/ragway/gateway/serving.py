"""Chat and text completions in OpenAI's wire format: a request becomes a plan for `generation`,
and a run comes back as one body or as server-sent events exactly as OpenAI sends them."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from ragway.core.errors import RagwayError
from ragway.gateway.auth import Principal
from ragway.gateway.errors import error_payload
from ragway.gateway.generation import FINISH, ChatPlan, Generation, GenerationService, Progress
from ragway.gateway.history import ToolCall, Turn
from ragway.gateway.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatLogprobs,
    Citation,
    Completion,
    CompletionChoice,
    CompletionRequest,
    DeltaFunction,
    DeltaToolCall,
    FunctionCallOut,
    NamedToolChoice,
    SamplingFields,
    TextLogprobs,
    TokenLogprob,
    ToolCallOut,
    TopLogprob,
    Usage,
)
from ragway.v1 import model_pb2

# Sent by `stream` once the model service admitted the request, before any event: the route starts
# the HTTP response on it (a refusal raises before, with its own status) and does not forward it.
ADMITTED = ""
TOOL_CHOICE = {
    "none": model_pb2.TOOL_CHOICE_MODE_NONE,
    "auto": model_pb2.TOOL_CHOICE_MODE_AUTO,
    "required": model_pb2.TOOL_CHOICE_MODE_REQUIRED,
}


@dataclass(frozen=True)
class Wire:
    """How the answer goes back: which object, streamed or not, with what extras."""

    kind: str  # "chat.completion" | "text_completion"
    stream: bool
    include_usage: bool
    logprobs: bool


def sampling(req: SamplingFields, logprobs: int | None) -> model_pb2.SamplingParams:
    """The sampling fields both APIs share, as the model service takes them."""
    params = model_pb2.SamplingParams(n=req.n, stop=req.stop or [], ignore_eos=req.ignore_eos)
    names = ("temperature", "top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty")
    for name in (*names, "repetition_penalty"):
        value = getattr(req, name)
        if value is not None:
            setattr(params, name, value)
    for token, bias in (req.logit_bias or {}).items():
        params.logit_bias[int(token)] = bias
    if logprobs is not None:
        params.logprobs = logprobs
    return params


def plan_chat(req: ChatCompletionRequest) -> ChatPlan:
    params = sampling(req, req.top_logprobs or 0 if req.logprobs else None)
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_object":
        params.json_object = True
    elif fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
        params.json_schema = json.dumps(fmt.json_schema.schema_ or {"type": "object"})
    tool_choice = None
    if isinstance(req.tool_choice, NamedToolChoice):
        tool_choice = model_pb2.ToolChoice(
            mode=model_pb2.TOOL_CHOICE_MODE_NAMED, name=req.tool_choice.function.name
        )
    elif req.tool_choice is not None:
        tool_choice = model_pb2.ToolChoice(mode=TOOL_CHOICE[req.tool_choice])
    tools = [
        model_pb2.Tool(
            name=t.function.name,
            description=t.function.description or "",
            parameters=json.dumps(t.function.parameters) if t.function.parameters is not None else "",
            strict=bool(t.function.strict),
        )
        for t in req.tools or []
    ]
    system, turns = [], []
    for m in req.messages:
        if m.role in ("system", "developer"):
            system.append(Turn("system", m.text()))
        else:
            calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or [])
            turns.append(Turn(m.role, m.text(), tool_calls=calls, tool_call_id=m.tool_call_id))
    return ChatPlan(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        endpoint="chat.completions",
        system=system,
        turns=turns,
        sampling=params,
        token_limit=req.token_limit,
        n=req.n,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=req.parallel_tool_calls,
        conversation_id=req.conversation_id,
        store=req.store,
        metadata=req.metadata,
    )


def chat_wire(req: ChatCompletionRequest) -> Wire:
    return Wire("chat.completion", req.stream, req.include_usage, req.logprobs)


async def prepare_completion(
    service: GenerationService, principal: Principal, req: CompletionRequest
) -> tuple[Generation, Wire]:
    gen = await service.prepare_text(
        principal,
        f"cmpl-{uuid.uuid4().hex}",
        req.model,
        req.prompt,  # type: ignore[arg-type]  # the validator made it str or token ids
        sampling(req, req.logprobs),
        req.max_tokens or 16,
    )
    return gen, Wire("text_completion", req.stream, req.include_usage, req.logprobs is not None)


def sse(payload: ChatCompletionChunk | Completion | dict[str, object] | str) -> str:
    if isinstance(payload, str):
        return f"data: {payload}\n\n"
    if isinstance(payload, dict):
        return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"
    return f"data: {payload.model_dump_json()}\n\n"


def _chat_logprobs(items: list[model_pb2.TokenLogprob]) -> ChatLogprobs:
    def top(t: model_pb2.TopLogprob) -> TopLogprob:
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


def _text_logprobs(items: list[model_pb2.TokenLogprob]) -> TextLogprobs:
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


def _chunk(
    gen: Generation, wire: Wire, deltas: list[model_pb2.ChoiceDelta]
) -> ChatCompletionChunk | Completion:
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
                    logprobs=_chat_logprobs(list(d.logprobs)) if wire.logprobs else None,
                    finish_reason=FINISH.get(d.finish_reason),
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
                logprobs=_text_logprobs(list(d.logprobs)) if wire.logprobs else None,
                finish_reason=FINISH.get(d.finish_reason),
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

    def fits(self, delta: model_pb2.ChoiceDelta) -> bool:
        return bool(delta.text) and not (self.wire.logprobs or delta.tool_calls or delta.finish_reason)

    def event(self, delta: model_pb2.ChoiceDelta) -> str:
        template = self._templates.get(delta.index)
        if template is None:
            probe = model_pb2.ChoiceDelta(index=delta.index, text=self.MARK)
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
                if not (delta.text or delta.finish_reason or delta.token_ids or delta.tool_calls):
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
    finally:
        await run.aclose()
