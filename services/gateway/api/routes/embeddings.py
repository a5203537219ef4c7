"""POST /v1/embeddings — OpenAI-compatible, through the retrieval service's embedder; metered."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter

from ragway.gateway import billing
from ragway.gateway.api.deps import CurrentPrincipal, LimiterDep, RetrievalDep, SessionDep, SettingsDep
from ragway.gateway.api.routing import StrictJsonRoute
from ragway.gateway.billing import Outcome
from ragway.gateway.errors import ModelNotFound
from ragway.gateway.protocol import EmbeddingRequest
from ragway.v1 import retrieval_pb2

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJsonRoute)

# The embedder reads at most this many tokens of one text (all-MiniLM-L6-v2: 256 + 2 special).
MAX_TOKENS_PER_TEXT = 258
EMBEDDING_MODELS = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def _encode(values: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()
    return values


@router.post("/embeddings")
async def create_embeddings(
    body: EmbeddingRequest,
    principal: CurrentPrincipal,
    session: SessionDep,
    retrieval: RetrievalDep,
    settings: SettingsDep,
    limiter: LimiterDep,
) -> dict[str, Any]:
    """Embed texts with the retrieval service's embedder (384-d all-MiniLM-L6-v2)."""
    if body.model not in EMBEDDING_MODELS:
        raise ModelNotFound(
            f"the embedding model {body.model!r} does not exist; use all-MiniLM-L6-v2", field="model"
        )
    texts: list[str] = body.input  # type: ignore[assignment]  # the validator made it a list
    await billing.check_rate_limits(limiter, principal)
    request_id = f"emb-{uuid.uuid4().hex}"
    worst = sum(min(len(t) + 2, MAX_TOKENS_PER_TEXT) for t in texts)
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
    outcome = Outcome(status="failed")
    try:
        reply = await retrieval.unary(
            retrieval.stub.Embed, retrieval_pb2.EmbedRequest(texts=texts), timeout=120
        )
        outcome = Outcome(prompt_tokens=reply.total_tokens, status="ok")
    finally:
        await billing.settle(session, reservation, outcome)
        await session.commit()
    return {
        "object": "list",
        "model": body.model,
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(list(v.values), body.encoding_format)}
            for i, v in enumerate(reply.vectors)
        ],
        "usage": {"prompt_tokens": reply.total_tokens, "total_tokens": reply.total_tokens},
    }
