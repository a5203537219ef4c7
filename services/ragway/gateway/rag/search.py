"""The one search path: every search — `/v1/collections/*/search`, the chat `rag` option,
`/v1/vector_stores/*/search` and the Responses API's `file_search` tool — is a `Search` run by
`run_search`. One access check (`rag.access`: the caller's collections and the shared ones, whether
named by name or by vector store id), one filter language (`rag.filters`: OpenAI's comparison and
compound filters, evaluated by the store; the collections API's JSON form is translated into it),
the ranker checked against what the retrieval service has, the query embedding metered in one
call, and one ranked list of chunks across every collection searched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import FailedPrecondition, InvalidArgument
from ragway.gateway.accounts import metering
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.accounts.limiter import Limiter
from ragway.gateway.catalog.embedding_models import check_embedding_model
from ragway.gateway.clients.retrieval import RetrievalClient, RetrievedChunk
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.core.tables import Collection, now
from ragway.gateway.generation.service import GenerationService
from ragway.gateway.rag import access, filters
from ragway.gateway.rag.protocol import SearchTuning
from ragway.gateway.rag.rerank import LLM, auto_reranks, llm_ranker, rerank_chunks

# OpenAI's rankers: "auto" and its dated default both mean the service's own choice.
AUTO_RANKERS = ("auto", "default-2024-11-15")
CROSS_ENCODER = "cross-encoder"
MAX_QUERIES = 8


Ranker = Literal["auto", "none", "cross-encoder", "llm"]


async def resolve_ranker(
    retrieval: RetrievalClient, ranker: str, field: str = "ranking_options.ranker"
) -> Ranker:
    """The ranker a request names: "auto" (or OpenAI's "default-2024-11-15"), "none", "llm" (the
    served language model, rag.rerank: the gateway reranks), or the retrieval service's
    cross-encoder by its name or as "cross-encoder". Any other name, or a cross-encoder the
    service does not have, is a 400 that lists what is available (asking the service only then)."""
    name = ranker.strip()
    if name.lower() in AUTO_RANKERS:
        return "auto"
    if name.lower() in ("none", LLM):
        return "none" if name.lower() == "none" else "llm"
    info = await retrieval.describe_service()
    if info.reranker and name in (CROSS_ENCODER, info.reranker):
        return "cross-encoder"
    available = ["auto", "none", LLM] + ([CROSS_ENCODER, info.reranker] if info.reranker else [])
    why = (
        ""
        if info.reranker
        else " (the retrieval service has no cross-encoder: set RAGWAY_RETRIEVAL_RERANKER)"
    )
    raise InvalidArgument(
        f"{field} {ranker!r} is not available{why}; use one of {', '.join(available)}", field=field
    )


@dataclass(frozen=True)
class Search:
    """One search, as any API asks for it. Fields an API has no name for keep their defaults;
    the `*_field` names are how the API's own errors name its parameters."""

    stores: Sequence[str]  # collection names or ids (`by_id`: vector store ids only)
    queries: Sequence[str]  # searched each; the best chunk of any query wins
    top_k: int
    tuning: SearchTuning  # mode, fusion, index parameters, ranking candidates and budget
    filters: Any = None  # the one filter language (rag.filters), not yet validated
    min_score: float | None = None
    ranker: str = "auto"
    embedding_model: str | None = None  # the embedder the caller means (collections API)
    by_id: bool = False  # vector stores: found by id, chunks labelled with it
    billed_as: str = "collections.search"  # the query embedding's usage endpoint
    rerank_endpoint: str = "search.rerank"  # the LLM rerank's usage endpoint
    filter_field: str = "filters"
    ranker_field: str = "ranking_options.ranker"


# Rewrites the queries after every check passed (the rag option's and vector stores'
# rewrite_query): a model call, so it runs only once nothing else can refuse the search.
Rewrite = Callable[[list[str]], Awaitable[list[str]]]


def check_queries(queries: Sequence[str]) -> list[str]:
    kept = [q for q in (q.strip() for q in queries) if q]
    if not kept:
        raise InvalidArgument("query is empty", field="query")
    if len(kept) > MAX_QUERIES:
        raise InvalidArgument(f"query: at most {MAX_QUERIES} queries", field="query")
    return kept


async def run_search(
    session: AsyncSession,
    retrieval: RetrievalClient,
    principal: Principal,
    request: Search,
    *,
    settings: GatewaySettings,
    limiter: Limiter,
    generation: GenerationService | None = None,
    rewrite: Rewrite | None = None,
) -> tuple[list[str], list[RetrievedChunk]]:
    """Run `request` over the collections the caller may read: the queries searched and the best
    `top_k` chunks over all of them, best first. Everything that can refuse the search does so
    before anything costs: access (404), filter, ranker, embedder and queries (400), expiry (412);
    then the query rewrite, then the searches with the query embedding metered, then the LLM
    rerank (billed by rag.rerank) when the request asks for it."""
    stores: list[Collection] = [
        await access.get(session, principal, ref, by_id=request.by_id)
        for ref in dict.fromkeys(request.stores)
    ]
    where = filters.parse(request.filters, request.filter_field)
    ranker = await resolve_ranker(retrieval, request.ranker, request.ranker_field)
    if ranker == "auto" and generation is not None and await auto_reranks(generation, principal, retrieval):
        ranker = "llm"
    ranking = request.tuning.ranking_options
    llm = (
        await llm_ranker(
            generation,
            principal,
            ranking.candidates if ranking else None,
            ranking.budget_ms if ranking else None,
            request.ranker_field,
        )
        if ranker == "llm"
        else None
    )
    # Each store embeds the query with the embedder it was built with: the query is billed under
    # that one (the dearest, should the stores searched together differ).
    embedders = []
    for store in stores:
        embedder = await retrieval.embedder(store.store_name)
        if request.embedding_model is not None:
            check_embedding_model(request.embedding_model, store.name, embedder)
        embedders.append(embedder or metering.BUNDLED_EMBEDDER)
    billed_model = max(embedders or [metering.BUNDLED_EMBEDDER], key=lambda m: settings.price(m).prompt)
    stamp = now()
    for store in stores:
        if store.expires_at is not None and store.expires_at < stamp:
            raise FailedPrecondition(f"vector store {store.id!r} has expired")
    queries = check_queries(request.queries)
    if rewrite is not None:
        queries = await rewrite(queries)
    wanted = max(request.top_k, llm.candidates) if llm else request.top_k
    tuned = request.tuning.settings(ranker)
    try:
        async with metering.embedding(
            session,
            limiter,
            principal,
            queries,
            endpoint=request.billed_as,
            price=settings.price(billed_model),
            model=billed_model,
        ):
            found = await asyncio.gather(
                *(
                    retrieval.search(
                        store.store_name,
                        query,
                        wanted,
                        where,
                        request.min_score,
                        tuned,
                        label=store.id if request.by_id else store.name,
                    )
                    for store in stores
                    for query in queries
                )
            )
    finally:
        touched = [store for store in stores if store.expires_after]
        for store in touched:
            access.touch(store, stamp)
        if touched:
            await session.commit()
    best: dict[tuple[str, str, int], RetrievedChunk] = {}
    for chunk in (c for group in found for c in group):
        key = (chunk.collection, chunk.document_id, chunk.chunk_index)
        if key not in best or best[key].score < chunk.score:
            best[key] = chunk
    ranked = sorted(best.values(), key=lambda c: c.score, reverse=True)
    if llm is not None and generation is not None:
        # Scored against the first query: the caller's own words (or their rewrite).
        ranked = await rerank_chunks(
            generation, principal, llm, queries[0], ranked, request.top_k, request.rerank_endpoint
        )
    return queries, ranked[: request.top_k]
