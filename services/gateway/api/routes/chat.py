"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from ragway.gateway.api.deps import CurrentPrincipal, GenerationDep, RetrievalDep, SessionDep
from ragway.gateway.api.routing import StrictJsonRoute
from ragway.gateway.protocol import ChatCompletionRequest, CompletionRequest
from ragway.gateway.rag_service import retrieve_sources
from ragway.gateway.serving import Generation, GenerationService

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJsonRoute)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _then(first: str, rest: AsyncGenerator[str, None]) -> AsyncIterator[str]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()


async def _respond(service: GenerationService, gen: Generation) -> Any:
    headers = {"X-Conversation-Id": gen.conversation_id} if gen.conversation_id else {}
    if gen.stream:
        events = service.stream(gen)
        # The first event comes once the model service admitted the request; a refusal raises
        # here, before the response starts, and becomes a 503/429 with Retry-After.
        first = await anext(events)
        return StreamingResponse(
            _then(first, events), media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
        )
    return JSONResponse(await service.complete(gen), headers=headers)


@router.post("/chat/completions")
async def create_chat_completion(
    body: ChatCompletionRequest,
    principal: CurrentPrincipal,
    service: GenerationDep,
    retrieval: RetrievalDep,
    session: SessionDep,
) -> Any:
    """OpenAI chat completions, plus `conversation_id` (history) and `rag` (grounding)."""
    sources = None
    if body.rag is not None:
        question = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
        sources = await retrieve_sources(session, retrieval, principal, body.rag, question)
    gen = await service.prepare_chat(principal, body, sources)
    return await _respond(service, gen)


@router.post("/completions")
async def create_completion(
    body: CompletionRequest, principal: CurrentPrincipal, service: GenerationDep
) -> Any:
    """OpenAI (legacy) text completions."""
    gen = await service.prepare_completion(principal, body)
    return await _respond(service, gen)
