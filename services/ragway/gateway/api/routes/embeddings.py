"""POST /v1/embeddings — OpenAI-compatible, routed by model name to the retrieval service's
embedders; metered."""

from __future__ import annotations

import base64
import uuid

import numpy as np
from fastapi import APIRouter

from ragway.gateway import billing
from ragway.gateway.api.deps import CurrentPrincipal, LimiterDep, RetrievalDep, SessionDep, SettingsDep
from ragway.gateway.api.routing import StrictJsonRoute
from ragway.gateway.billing import Outcome
from ragway.gateway.embedding_models import resolve_embedding_model
from ragway.gateway.protocol import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage

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
    await billing.check_rate_limits(limiter, principal)
    request_id = f"emb-{uuid.uuid4().hex}"
    worst = sum(min(len(t), model.max_tokens) + SPECIAL_TOKENS for t in texts)
    hold = await billing.hold_tokens(limiter, principal, worst)
    try:
        reservation = await billing.reserve(
            session,
            principal,
            request_id=request_id,
            model=body.model,
            endpoint="embeddings",
            price=settings.price(body.model),
            prompt_tokens=worst,
            max_completion_tokens=0,
        )
    except BaseException:
        await billing.settle_tokens(limiter, hold, 0)
        raise
    outcome = Outcome(status="failed")
    try:
        embedded = await retrieval.embed(texts, model.name)
        outcome = Outcome(prompt_tokens=embedded.total_tokens, status="ok")
    finally:
        await billing.settle_tokens(limiter, hold, outcome.prompt_tokens)
        await billing.settle(session, reservation, outcome)
        await session.commit()
    return EmbeddingList(
        model=body.model,
        data=[
            Embedding(index=i, embedding=_encode(vector, body.encoding_format))
            for i, vector in enumerate(embedded.vectors)
        ],
        usage=EmbeddingUsage(prompt_tokens=embedded.total_tokens, total_tokens=embedded.total_tokens),
    )
