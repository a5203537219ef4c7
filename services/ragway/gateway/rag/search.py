"""Searching a user's collections: JSON filters validated into typed conditions, the ranker a
request names checked against what the retrieval service has, and one ranked list of chunks
across several collections.

Filters arrive as JSON — `{"lang": "en", "year": {"gte": 2020}, "tag": {"in": ["a", "b"]}}` —
and are validated here, so a malformed one is a 400 naming `filter` before any RPC, and a filter
can only ever narrow a search inside collections the caller may read.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from ragway.core.errors import InvalidArgument
from ragway.core.limits import METADATA_KEY
from ragway.gateway.clients.retrieval import (
    Condition,
    RetrievalClient,
    RetrievedChunk,
    SearchSettings,
)

# OpenAI's rankers: "auto" and its dated default both mean the service's own choice.
AUTO_RANKERS = ("auto", "default-2024-11-15")
CROSS_ENCODER = "cross-encoder"

_RANGE_OPS = ("gt", "gte", "lt", "lte")
_SCALAR = str | int | float | bool


def parse_filter(spec: dict[str, Any] | None) -> list[Condition]:
    """`{key: value | {"in": [...]} | {"gte": n, ...}}` as conditions that must all hold."""
    conditions: list[Condition] = []
    for key, cond in (spec or {}).items():
        if not isinstance(key, str) or not METADATA_KEY.match(key):
            raise InvalidArgument(
                f"filter key {key!r} must be an identifier (letters, digits, '_'; up to 64)", field="filter"
            )
        if isinstance(cond, dict):
            if set(cond) == {"in"} and isinstance(cond["in"], list) and cond["in"]:
                if not all(isinstance(item, _SCALAR) for item in cond["in"]):
                    raise InvalidArgument(f"filter {key!r}: 'in' takes a list of scalars", field="filter")
                conditions.append(Condition(key, any_of=list(cond["in"])))
            elif (
                cond
                and set(cond) <= set(_RANGE_OPS)
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in cond.values())
            ):
                conditions.append(Condition(key, range={op: float(v) for op, v in cond.items()}))
            else:
                raise InvalidArgument(
                    f"filter {key!r}: use a value, {{'in': [...]}} or a range with gt/gte/lt/lte numbers",
                    field="filter",
                )
        elif isinstance(cond, _SCALAR):
            conditions.append(Condition(key, equals=cond))
        else:
            raise InvalidArgument(f"filter {key!r}: unsupported condition", field="filter")
    return conditions


async def resolve_ranker(
    retrieval: RetrievalClient, ranker: str, field: str = "ranking_options.ranker"
) -> Literal["auto", "none", "cross-encoder"]:
    """The ranker a request names, as the retrieval service takes it: "auto" (or OpenAI's
    "default-2024-11-15"), "none", or the configured cross-encoder by its name or as
    "cross-encoder". Any other name, or a cross-encoder the service does not have, is a 400
    that lists what is available (asking the service only then: auto and none need no RPC)."""
    name = ranker.strip()
    if name.lower() in AUTO_RANKERS:
        return "auto"
    if name.lower() == "none":
        return "none"
    info = await retrieval.describe_service()
    if info.reranker and name in (CROSS_ENCODER, info.reranker):
        return "cross-encoder"
    available = ["auto", "none"] + ([CROSS_ENCODER, info.reranker] if info.reranker else [])
    why = (
        ""
        if info.reranker
        else " (the retrieval service has no cross-encoder: set RAGWAY_RETRIEVAL_RERANKER)"
    )
    raise InvalidArgument(
        f"{field} {ranker!r} is not available{why}; use one of {', '.join(available)}", field=field
    )


async def search(
    retrieval: RetrievalClient,
    targets: list[tuple[str, str]],
    query: str,
    top_k: int,
    conditions: list[Condition],
    min_score: float | None,
    settings: SearchSettings = SearchSettings(),
) -> list[RetrievedChunk]:
    """Search (display name, store name) collections at once; the best `top_k` chunks overall."""
    if not query.strip():
        raise InvalidArgument("the query is empty", field="query")
    found = await asyncio.gather(
        *(
            retrieval.search(store, query, top_k, conditions, min_score, settings, label=display)
            for display, store in targets
        )
    )
    return sorted((c for group in found for c in group), key=lambda c: c.score, reverse=True)[:top_k]
