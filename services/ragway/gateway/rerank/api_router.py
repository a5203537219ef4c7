"""POST /v1/rerank (also /v2/rerank: Cohere's and Jina's clients) and POST /v1/score (vLLM's):
documents ranked for a query by the LLM reranker (rag.rerank: the served model's UPR score);
metered like every model call."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from ragway.core.errors import InvalidArgument
from ragway.gateway.core.deps import CurrentPrincipal, GenerationDep, SettingsDep
from ragway.gateway.core.json_route import StrictJsonRoute
from ragway.gateway.rag.rerank import relevance, score
from ragway.gateway.rerank.protocol import (
    RerankDocument,
    RerankMeta,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
    ScoreData,
    ScoreRequest,
    ScoreResponse,
)

router = APIRouter(tags=["rerank"], route_class=StrictJsonRoute)


def _check_documents(count: int, limit: int, field: str) -> None:
    if count == 0:
        raise InvalidArgument(f"{field} must not be empty: give at least one document", field=field)
    if count > limit:
        raise InvalidArgument(
            f"{field}: at most {limit} documents per request (RAGWAY_RERANK_MAX_DOCUMENTS), got {count}",
            field=field,
        )


@router.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True)
@router.post("/v2/rerank", response_model=RerankResponse, response_model_exclude_none=True)
async def create_rerank(
    body: RerankRequest, principal: CurrentPrincipal, generation: GenerationDep, settings: SettingsDep
) -> RerankResponse:
    """Rank documents by relevance to the query with the model `model` (Cohere / Jina shape)."""
    route = await generation.check(principal, body.model)
    texts = body.texts()
    _check_documents(len(texts), settings.rerank_max_documents, "documents")
    scored = await score(
        generation,
        principal,
        route,
        body.query,
        texts,
        endpoint="rerank",
        timeout=settings.rerank_timeout_seconds,
        passage_tokens=body.max_tokens_per_doc,
    )
    order = sorted(range(len(texts)), key=lambda i: scored.scores[i], reverse=True)[: body.top_n]
    results = [
        RerankResult(
            index=i,
            relevance_score=relevance(scored.scores[i]),
            document=body.documents[i] if not isinstance(body.documents[i], str) else None,
        )
        for i in order
    ]
    if body.return_documents:
        for result in results:
            if result.document is None:
                result.document = RerankDocument(text=texts[result.index])
    else:
        for result in results:
            result.document = None
    tokens = scored.prompt_tokens
    return RerankResponse(
        model=route.name,
        results=results,
        usage=RerankUsage(prompt_tokens=tokens, total_tokens=tokens),
        meta=RerankMeta(billed_units={"input_tokens": tokens, "search_units": 1}),
    )


@router.post("/v1/score", response_model=ScoreResponse)
async def create_score(
    body: ScoreRequest, principal: CurrentPrincipal, generation: GenerationDep, settings: SettingsDep
) -> ScoreResponse:
    """Score text_2 against text_1 with the model `model` (vLLM's shape): one query against many
    texts, or pairwise when both are lists of one length."""
    route = await generation.check(principal, body.model)
    firsts = [body.text_1] if isinstance(body.text_1, str) else body.text_1
    seconds = [body.text_2] if isinstance(body.text_2, str) else body.text_2
    _check_documents(len(seconds), settings.rerank_max_documents, "text_2")
    if len(firsts) not in (1, len(seconds)):
        raise InvalidArgument(
            f"text_1 has {len(firsts)} texts: give one, or one per text_2 entry ({len(seconds)})",
            field="text_1",
        )
    if any(not t.strip() for t in firsts):
        raise InvalidArgument("text_1 must not be empty", field="text_1")

    async def run(query: str, texts: list[str]) -> tuple[list[float], int]:
        scored = await score(
            generation,
            principal,
            route,
            query,
            texts,
            endpoint="score",
            timeout=settings.rerank_timeout_seconds,
            passage_tokens=body.truncate_prompt_tokens,
        )
        return scored.scores, scored.prompt_tokens

    if len(firsts) == 1:
        runs = [await run(firsts[0], seconds)]
    else:  # pairwise: one query per pair, scored at once
        runs = list(await asyncio.gather(*(run(q, [t]) for q, t in zip(firsts, seconds, strict=True))))
    values = [v for scores, _ in runs for v in scores]
    tokens = sum(n for _, n in runs)
    return ScoreResponse(
        model=route.name,
        data=[ScoreData(index=i, score=relevance(v)) for i, v in enumerate(values)],
        usage=RerankUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
