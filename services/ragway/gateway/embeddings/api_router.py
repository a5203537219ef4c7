"""POST /v1/embeddings — OpenAI-compatible, routed by model name to the retrieval service's
embedders; metered."""

from __future__ import annotations

import base64
import uuid

import numpy as np
from fastapi import APIRouter

from ragway.gateway.accounts import metering
from ragway.gateway.catalog.embedding_models import resolve_embedding_model
from ragway.gateway.core.deps import CurrentPrincipal, LimiterDep, RetrievalDep, SessionDep, SettingsDep
from ragway.gateway.core.json_route import StrictJsonRoute
from ragway.gateway.embeddings.protocol import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJsonRoute)

SPECIAL_TOKENS = 2  # an embedder reads its max_tokens of a text plus [CLS] and [SEP]


def _encode(values: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()
    return values


@router.post("/embeddings", response_model=EmbeddingList)
async def create_embeddings(
    body: EmbeddingRequest,
    principal: CurrentPrincipal,
    session: SessionDep,
    retrieval: RetrievalDep,
    settings: SettingsDep,
    limiter: LimiterDep,
) -> EmbeddingList:
    """Embed texts with the retrieval service's embedder called `model`."""
    model = await resolve_embedding_model(retrieval, body.model)
    texts: list[str] = body.input  # type: ignore[assignment]  # the validator made it a list
    await metering.admit(limiter, principal)
    request_id = f"emb-{uuid.uuid4().hex}"
    worst = sum(min(len(t), model.max_tokens) + SPECIAL_TOKENS for t in texts)
    # Billed under the embedder that ran (an alias names it; its price is the embedder's).
    async with metering.metered(
        session,
        limiter,
        principal,
        request_id=request_id,
        model=model.name,
        endpoint="embeddings",
        price=settings.price(model.name),
        prompt_tokens=worst,
    ) as outcome:
        embedded = await retrieval.embed(texts, model.name)
        outcome.prompt_tokens, outcome.status = embedded.total_tokens, "ok"
    return EmbeddingList(
        model=body.model,
        data=[
            Embedding(index=i, embedding=_encode(vector, body.encoding_format))
            for i, vector in enumerate(embedded.vectors)
        ],
        usage=EmbeddingUsage(prompt_tokens=embedded.total_tokens, total_tokens=embedded.total_tokens),
    )
