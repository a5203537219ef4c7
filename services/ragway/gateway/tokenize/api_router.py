"""POST /tokenize and POST /detokenize, as `vllm serve` has them (authenticated, not billed, but
counted against the key's requests per minute: each is work for the model service)."""

from __future__ import annotations

from fastapi import APIRouter

from ragway.gateway.accounts import metering
from ragway.gateway.core.deps import CurrentPrincipal, LimiterDep, ModelsDep
from ragway.gateway.core.json_route import StrictJsonRoute
from ragway.gateway.tokenize import serving
from ragway.gateway.tokenize.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)

router = APIRouter(tags=["tokenizer"], route_class=StrictJsonRoute)


@router.post("/tokenize", response_model=TokenizeResponse)
async def create_tokens(
    body: TokenizeRequest, principal: CurrentPrincipal, models: ModelsDep, limiter: LimiterDep
) -> TokenizeResponse:
    """Token ids of a text or of a chat prompt, as the model would be sent them."""
    await metering.admit(limiter, principal)
    return await serving.tokenize(models, principal, body)


@router.post("/detokenize", response_model=DetokenizeResponse)
async def create_text(
    body: DetokenizeRequest, principal: CurrentPrincipal, models: ModelsDep, limiter: LimiterDep
) -> DetokenizeResponse:
    """The text of token ids."""
    await metering.admit(limiter, principal)
    return await serving.detokenize(models, principal, body)
