"""The LLM reranker: passages scored by the model the gateway already serves (the model service's
Score call, UPR), metered like any other use of a model.

It runs here, in the gateway, and not in the retrieval service: the retrieval service knows nothing
of models, replicas or users (DESIGN §1), while the gateway already holds the model router (which
replica, which fallbacks), the caller's key (what it may use, its limits) and the bill. So a
search with `ranker: "llm"` asks the retrieval service for its first-stage candidates (ranker
"none"), scores them through the model client and reorders them here. The cross-encoder, which
lives next to the vector store, stays the retrieval service's.

A rerank has a time budget: past it the call is cancelled (the model service aborts its prompts)
and the search keeps its first-stage order — a late reranker must not fail a search.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from ragway.core.errors import DeadlineExceeded, InvalidArgument, NotFound, RagwayError
from ragway.gateway.accounts import metering
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.catalog.model_router import Route
from ragway.gateway.clients.model import PassageScores
from ragway.gateway.clients.retrieval import RetrievalClient, RetrievedChunk
from ragway.gateway.generation.service import GenerationService

log = logging.getLogger(__name__)

LLM = "llm"
# The template and separators the model service adds to each passage, in tokens (an upper bound,
# for the worst-case reservation).
TEMPLATE_TOKENS = 32


@dataclass(frozen=True)
class LlmRanker:
    """A search's LLM rerank: the model that scores, how many first-stage hits, how long it may take."""

    route: Route
    candidates: int
    timeout: float


def relevance(score: float) -> float:
    """A mean log-probability as a 0..1 relevance: the per-token geometric-mean probability."""
    return math.exp(score)


async def rerank_model(service: GenerationService, principal: Principal, field: str = "model") -> Route:
    """The model that scores for this caller: RAGWAY_RERANK_MODEL, or the first it may use."""
    try:
        return await service.models.resolve(principal, service.settings.rerank_model or None)
    except NotFound:
        raise InvalidArgument(
            f"{field}: the LLM reranker needs a model this key may use"
            + (
                f" ({service.settings.rerank_model!r}, RAGWAY_RERANK_MODEL)"
                if service.settings.rerank_model
                else ""
            ),
            field=field,
        ) from None


async def auto_reranks(service: GenerationService, principal: Principal, retrieval: RetrievalClient) -> bool:
    """Whether ranker "auto" means the LLM reranker for this caller (RAGWAY_RERANK_AUTO). Whether
    it ranks better than hybrid search depends on the model (the bundled 135M one does not: README),
    so the operator opts in: "gpu" where the scoring model runs on GPUs (on the CPU a 20-candidate
    Score takes seconds, past any interactive search), "always". A cross-encoder configured in the
    retrieval service is the operator's choice and stays auto's."""
    mode = service.settings.rerank_auto
    if mode == "never":
        return False
    try:
        route = await service.models.resolve(principal, service.settings.rerank_model or None)
    except RagwayError:
        return False  # no model to score with (none for this key, or down): auto keeps the first stage
    if mode == "gpu" and route.info.device in ("", "cpu"):
        return False
    return not (await retrieval.describe_service()).reranker


async def llm_ranker(
    service: GenerationService | None,
    principal: Principal,
    candidates: int | None = None,
    budget_ms: int | None = None,
    field: str = "ranking_options.ranker",
) -> LlmRanker:
    """The LLM rerank a search asked for, with the settings' candidate count and time budget where
    the request gives none."""
    if service is None:
        raise InvalidArgument(f"{field}: the llm ranker is not available here", field=field)
    settings = service.settings
    return LlmRanker(
        route=await rerank_model(service, principal, field),
        candidates=candidates or settings.rerank_candidates,
        timeout=budget_ms / 1000 if budget_ms else settings.rerank_timeout_seconds,
    )


async def score(
    service: GenerationService,
    principal: Principal,
    route: Route,
    query: str,
    texts: Sequence[str],
    *,
    endpoint: str,
    timeout: float | None = None,
    passage_tokens: int | None = None,
) -> PassageScores:
    """Each text's mean query log-probability (`passage_tokens` of it read, default
    RAGWAY_RERANK_PASSAGE_TOKENS), billed to the caller as prompt tokens of `route`'s model under
    `endpoint` (the one metering path: metering.metered)."""
    passage_tokens = passage_tokens or service.settings.rerank_passage_tokens
    worst = sum(min(len(t), passage_tokens) + TEMPLATE_TOKENS + len(query) for t in texts)
    async with (
        service.sessions() as session,
        metering.metered(
            session,
            service.limiter,
            principal,
            request_id=f"rrk-{uuid.uuid4().hex}",
            model=route.name,
            endpoint=endpoint,
            price=route.price,
            prompt_tokens=worst,
        ) as outcome,
    ):
        try:
            scored = await route.client.score(query, texts, passage_tokens, timeout)
        except DeadlineExceeded:
            outcome.status = "aborted"
            raise
        outcome.prompt_tokens, outcome.cached_tokens = scored.prompt_tokens, scored.cached_tokens
        outcome.status = "ok"
    return scored


async def rerank_chunks(
    service: GenerationService,
    principal: Principal,
    ranker: LlmRanker,
    query: str,
    chunks: Sequence[RetrievedChunk],
    top_k: int,
    endpoint: str,
) -> list[RetrievedChunk]:
    """The first `ranker.candidates` chunks reordered by the model, best `top_k`, each scored by
    its relevance (0..1); past the time budget, the first-stage order."""
    pool = list(chunks[: ranker.candidates])
    if not pool:
        return []
    try:
        scored = await score(
            service,
            principal,
            ranker.route,
            query,
            [c.text for c in pool],
            endpoint=endpoint,
            timeout=ranker.timeout,
        )
    except DeadlineExceeded:
        log.warning(
            "llm rerank of %d candidates passed its %.1f s budget: first-stage order kept",
            len(pool),
            ranker.timeout,
        )
        return pool[:top_k]
    ranked = sorted(
        (dataclasses.replace(c, score=relevance(s)) for c, s in zip(pool, scored.scores, strict=True)),
        key=lambda c: c.score,
        reverse=True,
    )
    return ranked[:top_k]
