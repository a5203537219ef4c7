"""GET /v1/models: every model and alias the caller may use, the embedding models included."""

from __future__ import annotations

from fastapi import APIRouter

from ragway.gateway.accounts.auth import Principal
from ragway.gateway.catalog.embedding_models import embedding_model_cards
from ragway.gateway.catalog.model_router import ModelRouter
from ragway.gateway.catalog.protocol import ModelCard, ModelList
from ragway.gateway.clients.retrieval import RetrievalClient
from ragway.gateway.core.deps import CurrentPrincipal, ModelsDep, RetrievalDep
from ragway.gateway.core.errors import ModelNotFound
from ragway.gateway.core.json_route import StrictJsonRoute

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJsonRoute)


async def _cards(models: ModelRouter, principal: Principal, retrieval: RetrievalClient) -> list[ModelCard]:
    """One card per name and alias; an alias's `root` is the model it stands for."""
    chat = [
        ModelCard(
            id=model_id,
            created=0,
            root=listed.name,
            max_model_len=listed.info.max_model_len if listed.info is not None else None,
            dtype=listed.info.dtype if listed.info is not None else None,
            engine=(listed.info.engine or None) if listed.info is not None else None,
        )
        for listed in await models.listing(principal)
        for model_id in (listed.name, *listed.aliases)
    ]
    return [*chat, *await embedding_model_cards(retrieval)]


@router.get("/models", response_model=ModelList)
async def list_models(principal: CurrentPrincipal, models: ModelsDep, retrieval: RetrievalDep) -> ModelList:
    """The models (and aliases) this gateway serves to the caller."""
    return ModelList(data=await _cards(models, principal, retrieval))


@router.get("/models/{model_id:path}", response_model=ModelCard)
async def get_model(
    model_id: str, principal: CurrentPrincipal, models: ModelsDep, retrieval: RetrievalDep
) -> ModelCard:
    """One model, by id."""
    for card in await _cards(models, principal, retrieval):
        if card.id == model_id:
            return card
    raise ModelNotFound(f"the model {model_id!r} does not exist or you do not have access to it")
