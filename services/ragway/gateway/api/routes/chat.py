"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ragway.gateway import serving
from ragway.gateway.api.deps import CurrentPrincipal, GenerationDep, RetrievalDep, SessionDep
from ragway.gateway.api.routing import StrictJsonRoute
from ragway.gateway.generation import Generation, GenerationService
from ragway.gateway.protocol import ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest
from ragway.gateway.rag import ground

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJsonRoute)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAMED = {200: {"content": {"text/event-stream": {}}, "description": "With stream: true, SSE events."}}


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body is read, so the next ASGI message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _respond(request: Request, service: GenerationService, gen: Generation, wire: serving.Wire) -> Any:
    headers = {"X-Conversation-Id": gen.conversation_id} if gen.conversation_id else {}
    if wire.stream:
        events = serving.stream(service, gen, wire)
        # Admission happens in the first step: a refusal raises here, before the response starts,
        # and becomes a 503/429 with Retry-After. The events generator is started, so it is closed
        # (and the request settled) however the response ends.
        if await anext(events) != serving.ADMITTED:
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
    return JSONResponse(serving.body(gen, wire, progress).model_dump(mode="json"), headers=headers)


@router.post("/chat/completions", response_model=ChatCompletion, responses=STREAMED)  # type: ignore[arg-type]
async def create_chat_completion(
    request: Request,
    body: ChatCompletionRequest,
    principal: CurrentPrincipal,
    service: GenerationDep,
    retrieval: RetrievalDep,
    session: SessionDep,
) -> Any:
    """OpenAI chat completions, plus `conversation_id` (history) and `rag` (grounding)."""
    route = await service.check(principal, body.model)
    plan = serving.plan_chat(body)
    sources = None
    if body.rag is not None:
        earlier = await service.history(principal, body.conversation_id) if body.conversation_id else []
        asked = [t.content for _, t in earlier if t.role == "user"] + [
            t.content for t in plan.turns if t.role == "user"
        ]
        sources = await ground(
            session,
            retrieval,
            principal,
            body.rag,
            asked,
            service,
            route,
        )
    gen = await service.prepare(principal, plan, route, sources)
    return await _respond(request, service, gen, serving.chat_wire(body))


@router.post("/completions", response_model=Completion, responses=STREAMED)  # type: ignore[arg-type]
async def create_completion(
    request: Request, body: CompletionRequest, principal: CurrentPrincipal, service: GenerationDep
) -> Any:
    """OpenAI (legacy) text completions."""
    gen, wire = await serving.prepare_completion(service, principal, body)
    return await _respond(request, service, gen, wire)
