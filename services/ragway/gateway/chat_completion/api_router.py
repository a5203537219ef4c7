"""POST /v1/chat/completions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ragway.gateway.chat_completion import serving
from ragway.gateway.chat_completion.protocol import ChatCompletion, ChatCompletionRequest
from ragway.gateway.chat_completion.serving import STREAMED
from ragway.gateway.core.deps import CurrentPrincipal, GenerationDep, RetrievalDep, SessionDep
from ragway.gateway.core.json_route import StrictJsonRoute

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJsonRoute)


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
        sources = await serving.ground(
            session,
            retrieval,
            principal,
            body.rag,
            asked,
            service,
            route,
        )
    gen = await service.prepare(principal, plan, route, sources)
    return await serving.respond(request, service, gen, serving.chat_wire(body))
