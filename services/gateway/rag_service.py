"""RAG on behalf of a user: search their collections and turn hits into numbered sources.

Filters arrive as JSON — `{"lang": "en", "year": {"gte": 2020}, "tag": {"in": ["a", "b"]}}` —
and are validated here into the retrieval service's typed Filter, so a malformed one is a 400
naming `filter`, and a filter can only ever narrow a search inside collections the caller may read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf import json_format, struct_pb2
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import InvalidArgument
from ragway.gateway import collections
from ragway.gateway.auth import Principal
from ragway.gateway.clients import RetrievalClient
from ragway.gateway.protocol import RagOptions
from ragway.gateway.rag import Source, Sources
from ragway.v1 import retrieval_pb2

_RANGE_OPS = ("gt", "gte", "lt", "lte")


def _value(value: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    json_format.ParseDict(value, out)
    return out


def to_filter(spec: dict[str, Any] | None) -> retrieval_pb2.Filter | None:
    if not spec:
        return None
    result = retrieval_pb2.Filter()
    for key, cond in spec.items():
        if not isinstance(key, str) or not key or len(key) > 128:
            raise InvalidArgument("filter keys must be non-empty strings", field="filter")
        if isinstance(cond, dict):
            if set(cond) == {"in"} and isinstance(cond["in"], list) and cond["in"]:
                any_of = struct_pb2.ListValue()
                for item in cond["in"]:
                    if not isinstance(item, str | int | float | bool):
                        raise InvalidArgument(f"filter {key!r}: 'in' takes a list of scalars", field="filter")
                    any_of.values.append(_value(item))
                result.must.append(retrieval_pb2.FieldCondition(key=key, any_of=any_of))
            elif (
                cond
                and set(cond) <= set(_RANGE_OPS)
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in cond.values())
            ):
                result.must.append(retrieval_pb2.FieldCondition(key=key, range=retrieval_pb2.Range(**cond)))
            else:
                raise InvalidArgument(
                    f"filter {key!r}: use a value, {{'in': [...]}} or a range with gt/gte/lt/lte numbers",
                    field="filter",
                )
        elif isinstance(cond, str | int | float | bool):
            result.must.append(retrieval_pb2.FieldCondition(key=key, equals=_value(cond)))
        else:
            raise InvalidArgument(f"filter {key!r}: unsupported condition", field="filter")
    return result


async def search(
    retrieval: RetrievalClient,
    targets: list[tuple[str, str]],
    query: str,
    top_k: int,
    filter_spec: dict[str, Any] | None,
    min_score: float | None,
) -> list[Source]:
    """Search (display name, store name) collections at once; the best `top_k` hits overall."""
    if not query.strip():
        raise InvalidArgument("the query is empty", field="query")
    filt = to_filter(filter_spec)

    async def one(display: str, store: str) -> list[Source]:
        request = retrieval_pb2.SearchRequest(collection=store, text=query, top_k=top_k, filter=filt)
        if min_score is not None:
            request.score_threshold = min_score
        reply = await retrieval.unary(retrieval.stub.Search, request)
        return [
            Source(
                index=0,
                collection=display,
                document_id=h.document_id,
                chunk_index=h.chunk_index,
                score=h.score,
                text=h.text,
                metadata=json_format.MessageToDict(h.metadata),
            )
            for h in reply.hits
        ]

    found = await asyncio.gather(*(one(display, store) for display, store in targets))
    hits = sorted((h for group in found for h in group), key=lambda h: h.score, reverse=True)[:top_k]
    for number, hit in enumerate(hits, start=1):
        hit.index = number
    return hits


async def retrieve_sources(
    session: AsyncSession, retrieval: RetrievalClient, principal: Principal, rag: RagOptions, question: str
) -> Sources:
    targets = []
    for name in dict.fromkeys(rag.collections):
        row = await collections.get(session, principal, name)
        targets.append((row.name, row.store_name))
    return Sources(await search(retrieval, targets, question, rag.top_k, rag.filter, rag.min_score))
