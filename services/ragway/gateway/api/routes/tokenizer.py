"""POST /tokenize and POST /detokenize, as `vllm serve` has them (authenticated, not billed)."""

from __future__ import annotations

from fastapi import APIRouter

from ragway.gateway import tokenization
from ragway.gateway.api.deps import CurrentPrincipal, ModelsDep
from ragway.gateway.api.routing import StrictJsonRoute
from ragway.gateway.tokenization import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)

router = APIRouter(tags=["tokenizer"], route_class=StrictJsonRoute)


@router.post("/tokenize", response_model=TokenizeResponse)
async def create_tokens(
    body: TokenizeRequest, principal: CurrentPrincipal, models: ModelsDep
) -> TokenizeResponse:
    """Token ids of a text or of a chat prompt, as the model would be sent them."""
    return await tokenization.tokenize(models, principal, body)


@router.post("/detokenize", response_model=DetokenizeResponse)
async def create_text(
    body: DetokenizeRequest, principal: CurrentPrincipal, models: ModelsDep
) -> DetokenizeResponse:
    """The text of token ids."""
    return await tokenization.detokenize(models, principal, body)
