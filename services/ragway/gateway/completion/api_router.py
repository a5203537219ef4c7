"""POST /v1/completions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ragway.gateway.chat_completion.serving import STREAMED, respond
from ragway.gateway.completion.protocol import Completion, CompletionRequest
from ragway.gateway.completion.serving import prepare_completion
from ragway.gateway.core.deps import CurrentPrincipal, GenerationDep
from ragway.gateway.core.json_route import StrictJsonRoute

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJsonRoute)


@router.post("/completions", response_model=Completion, responses=STREAMED)  # type: ignore[arg-type]
async def create_completion(
    request: Request, body: CompletionRequest, principal: CurrentPrincipal, service: GenerationDep
) -> Any:
    """OpenAI (legacy) text completions."""
    gen, wire = await prepare_completion(service, principal, body)
    return await respond(request, service, gen, wire)
