"""GET /v1/models."""

from __future__ import annotations

from fastapi import APIRouter

from ragway.gateway.api.deps import CurrentPrincipal, ModelDep
from ragway.gateway.api.routing import StrictJsonRoute
from ragway.gateway.errors import ModelNotFound
from ragway.gateway.protocol import ModelCard, ModelList

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJsonRoute)


async def _card(model: ModelDep) -> ModelCard:
    info = await model.info()
    return ModelCard(id=info.name, created=0, max_model_len=info.max_model_len)


@router.get("/models", response_model=ModelList)
async def list_models(principal: CurrentPrincipal, model: ModelDep) -> ModelList:
    """The models this gateway serves."""
    return ModelList(data=[await _card(model)])


@router.get("/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, principal: CurrentPrincipal, model: ModelDep) -> ModelCard:
    """One model, by id."""
    card = await _card(model)
    if card.id != model_id:
        raise ModelNotFound(f"the model {model_id!r} does not exist")
    return card
