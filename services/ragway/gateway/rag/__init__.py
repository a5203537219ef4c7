"""RAG in the gateway: who may use which collection (`access`), what goes into a collection
(`documents`), what to search for (`query`), finding chunks (`search`) and putting them in front
of the model (`grounding`).

`ground` is the one entry point generation uses: it runs after the model and rate-limit checks,
so a refused request costs no embedding and no search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from ragway.gateway.auth import Principal
from ragway.gateway.clients.retrieval import RetrievalClient
from ragway.gateway.protocol import RagOptions
from ragway.gateway.rag import access
from ragway.gateway.rag.grounding import Sources
from ragway.gateway.rag.query import follow_up_query, rewrite_query
from ragway.gateway.rag.search import parse_filter, resolve_ranker, search

if TYPE_CHECKING:  # generation imports this package (Sources)
    from ragway.gateway.generation import GenerationService
    from ragway.gateway.model_router import Route

__all__ = ["Sources", "ground"]


async def ground(
    session: AsyncSession,
    retrieval: RetrievalClient,
    principal: Principal,
    options: RagOptions,
    asked: list[str],
    service: GenerationService,
    route: Route,
) -> Sources:
    """The best chunks for the newest of the questions `asked` (the conversation's user turns,
    oldest first) from the collections `options` names and the caller may read."""
    conditions = parse_filter(options.filter)
    ranker = await resolve_ranker(
        retrieval,
        options.ranking_options.ranker if options.ranking_options else "auto",
        "rag.ranking_options.ranker",
    )
    targets = []
    for name in dict.fromkeys(options.collections):
        row = await access.get(session, principal, name)
        targets.append((row.name, row.store_name))
    query = (
        await rewrite_query(service, principal, route, asked)
        if options.rewrite_query
        else follow_up_query(asked)
    )
    chunks = await search(
        retrieval, targets, query, options.top_k, conditions, options.min_score, options.settings(ranker)
    )
    return Sources(tuple(chunks))
