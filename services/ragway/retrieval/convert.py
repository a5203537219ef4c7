"""Protobuf <-> domain conversion for the retrieval service; no logic beyond shape and validation."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from ragway.core.errors import InvalidArgument
from ragway.core.limits import MAX_FILTER_CLAUSES, MAX_FILTER_DEPTH, METADATA_KEY
from ragway.retrieval.service import (
    CollectionInfo,
    DocumentInput,
    Embeddings,
    Mode,
    Ranker,
    SearchOptions,
    SearchResult,
    ServiceInfo,
    StoredDocument,
)
from ragway.retrieval.stores.base import (
    Condition,
    Distance,
    DocumentSummary,
    Filter,
    Fusion,
    IndexParams,
    Range,
    Scalar,
    StoredChunk,
)
from ragway.v1 import retrieval_pb2 as pb

_DISTANCE_FROM_PB: dict[int, Distance] = {
    pb.DISTANCE_UNSPECIFIED: Distance.COSINE,
    pb.DISTANCE_COSINE: Distance.COSINE,
    pb.DISTANCE_DOT: Distance.DOT,
    pb.DISTANCE_EUCLID: Distance.EUCLID,
}
_DISTANCE_TO_PB = {
    Distance.COSINE: pb.DISTANCE_COSINE,
    Distance.DOT: pb.DISTANCE_DOT,
    Distance.EUCLID: pb.DISTANCE_EUCLID,
}


def distance_from_pb(value: int) -> Distance:
    if value not in _DISTANCE_FROM_PB:
        raise InvalidArgument(f"unknown distance {value}", field="distance")
    return _DISTANCE_FROM_PB[value]


_MODE_FROM_PB: dict[int, Mode | None] = {
    pb.SEARCH_MODE_UNSPECIFIED: None,
    pb.SEARCH_MODE_DENSE: Mode.DENSE,
    pb.SEARCH_MODE_SPARSE: Mode.SPARSE,
    pb.SEARCH_MODE_HYBRID: Mode.HYBRID,
}
_MODE_TO_PB = {
    Mode.DENSE: pb.SEARCH_MODE_DENSE,
    Mode.SPARSE: pb.SEARCH_MODE_SPARSE,
    Mode.HYBRID: pb.SEARCH_MODE_HYBRID,
}
_FUSION_FROM_PB = {pb.FUSION_UNSPECIFIED: Fusion.RRF, pb.FUSION_RRF: Fusion.RRF, pb.FUSION_DBSF: Fusion.DBSF}


def index_from_pb(index: pb.IndexParams) -> IndexParams:
    return IndexParams(
        index.hnsw_m, index.hnsw_ef_construct, index.milvus_index_type, index.on_disk, index.ivf_nlist
    )


def _weight(options: pb.HybridOptions, name: str) -> float:
    """Unset means 1; an explicit 0 (the fields are `optional`, so 0 is told from unset) leaves
    that list out of the fusion, and the service runs the other mode alone."""
    return float(getattr(options, name)) if options.HasField(name) else 1.0


def search_options_from_pb(request: pb.SearchRequest) -> SearchOptions:
    if request.mode not in _MODE_FROM_PB:
        raise InvalidArgument(f"unknown search mode {request.mode}", field="mode")
    if request.hybrid.fusion not in _FUSION_FROM_PB:
        raise InvalidArgument(f"unknown fusion {request.hybrid.fusion}", field="hybrid.fusion")
    ranker_name = request.ranking_options.ranker.strip().lower() or Ranker.AUTO.value
    try:
        ranker = Ranker(ranker_name)
    except ValueError:
        raise InvalidArgument(
            f"unknown ranker {request.ranking_options.ranker!r}; use one of "
            + ", ".join(r.value for r in Ranker),
            field="ranking_options.ranker",
        ) from None
    return SearchOptions(
        mode=_MODE_FROM_PB[request.mode],
        fusion=_FUSION_FROM_PB[request.hybrid.fusion],
        dense_weight=_weight(request.hybrid, "dense_weight"),
        sparse_weight=_weight(request.hybrid, "sparse_weight"),
        prefetch=request.hybrid.prefetch_limit,
        ranker=ranker,
        rerank_candidates=request.ranking_options.candidates,
        ef=request.params.ef,
        nprobe=request.params.nprobe,
    )


def search_result_to_pb(result: SearchResult) -> pb.SearchResponse:
    return pb.SearchResponse(
        hits=[chunk_to_hit(h) for h in result.hits],
        mode=_MODE_TO_PB[result.mode],
        fallback_reason=result.fallback_reason,
        ranker=result.ranker,
    )


def service_info_to_pb(info: ServiceInfo) -> pb.ServiceInfo:
    return pb.ServiceInfo(
        backend=info.backend,
        embedder=info.embedder,
        sparse_encoder=info.sparse_encoder,
        reranker=info.reranker,
        notes=info.notes,
        rankers=[r.value for r in Ranker if r is not Ranker.CROSS_ENCODER or info.reranker],
        embedders=[
            pb.EmbedderInfo(name=e.name, dimension=e.dimension, max_tokens=e.max_tokens)
            for e in info.embedders
        ],
    )


def collection_to_pb(info: CollectionInfo) -> pb.CollectionInfo:
    spec = info.spec
    return pb.CollectionInfo(
        name=spec.name,
        vector_count=info.vector_count,
        document_count=info.document_count,
        dimension=spec.dimension,
        embedder=spec.embedder,
        distance=_DISTANCE_TO_PB[spec.distance],
        index=pb.IndexParams(
            hnsw_m=spec.index.hnsw_m,
            hnsw_ef_construct=spec.index.hnsw_ef_construct,
            milvus_index_type=spec.index.milvus_index_type,
            on_disk=spec.index.on_disk,
            ivf_nlist=spec.index.ivf_nlist,
        ),
        backend=info.backend,
        sparse_encoder=spec.sparse,
    )


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(struct)


def dict_to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def document_from_pb(doc: pb.DocumentInput) -> DocumentInput:
    content: str | bytes = doc.data if doc.WhichOneof("content") == "data" else doc.text
    return DocumentInput(
        id=doc.id,
        content=content,
        content_type=doc.content_type,
        metadata=struct_to_dict(doc.metadata),
        chunk_tokens=doc.chunking.chunk_tokens,
        overlap_tokens=doc.chunking.overlap_tokens,
    )


def _scalar(value: struct_pb2.Value, field: str) -> Scalar | float:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() else number
    raise InvalidArgument(
        f"filter values must be strings, numbers or booleans, not {kind or 'unset'}", field=field
    )


def _condition(cond: pb.FieldCondition, field: str, depth: int, seen: list[int]) -> Condition | Filter:
    seen[0] += 1
    if seen[0] > MAX_FILTER_CLAUSES:
        raise InvalidArgument(f"a filter has at most {MAX_FILTER_CLAUSES} clauses", field=field)
    which = cond.WhichOneof("condition")
    if which == "filter":
        if cond.key:
            raise InvalidArgument("a nested filter takes no key", field=f"{field}.key")
        nested = _filter(cond.filter, f"{field}.filter", depth + 1, seen)
        if not nested:
            raise InvalidArgument("a nested filter needs at least one clause", field=f"{field}.filter")
        return nested
    if not METADATA_KEY.match(cond.key):
        raise InvalidArgument(
            f"filter key {cond.key!r} must be an identifier (letters, digits, '_'; up to 64)",
            field=f"{field}.key",
        )
    if which == "equals":
        value = _scalar(cond.equals, f"{field}.equals")
        if isinstance(value, float):  # Qdrant matches only strings, integers and booleans exactly.
            return Condition(cond.key, range=Range(gte=value, lte=value))
        return Condition(cond.key, equals=value)
    if which == "any_of":
        values = [_scalar(v, f"{field}.any_of") for v in cond.any_of.values]
        if not values:
            raise InvalidArgument("any_of needs at least one value", field=f"{field}.any_of")
        if all(isinstance(v, str) for v in values):
            return Condition(cond.key, any_of=tuple(str(v) for v in values))
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return Condition(cond.key, any_of=tuple(int(v) for v in values))
        raise InvalidArgument(
            "any_of values must be all strings or all integers (or a nested filter that ORs equals)",
            field=f"{field}.any_of",
        )
    if which == "range":
        r = cond.range
        bounds = {b: getattr(r, b) if r.HasField(b) else None for b in ("gt", "gte", "lt", "lte")}
        if all(v is None for v in bounds.values()):
            raise InvalidArgument("a range needs at least one bound", field=f"{field}.range")
        return Condition(cond.key, range=Range(**bounds))
    raise InvalidArgument("a condition needs equals, any_of, range or filter", field=field)


def _filter(where: pb.Filter, field: str, depth: int, seen: list[int]) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidArgument(f"a filter nests at most {MAX_FILTER_DEPTH} levels", field=field)
    return Filter(
        *(
            tuple(
                _condition(c, f"{field}.{part}[{i}]", depth, seen) for i, c in enumerate(getattr(where, part))
            )
            for part in ("must", "should", "must_not")
        )
    )


def filter_from_pb(where: pb.Filter) -> Filter:
    """A request's filter in domain terms; INVALID_ARGUMENT naming the clause that is wrong."""
    return _filter(where, "filter", 0, [0])


def chunk_to_hit(chunk: StoredChunk) -> pb.Hit:
    return pb.Hit(
        document_id=chunk.document_id,
        chunk_index=chunk.index,
        text=chunk.text,
        score=chunk.score,
        metadata=dict_to_struct(chunk.metadata),
        rerank_score=chunk.rerank_score,
    )


def document_to_pb(doc: StoredDocument) -> pb.Document:
    return pb.Document(
        id=doc.id,
        metadata=dict_to_struct(doc.metadata),
        chunks=[pb.Chunk(index=c.index, text=c.text) for c in doc.chunks],
    )


def summary_to_pb(summary: DocumentSummary) -> pb.DocumentSummary:
    return pb.DocumentSummary(id=summary.id, chunks=summary.chunks, metadata=dict_to_struct(summary.metadata))


def embeddings_to_pb(result: Embeddings) -> pb.EmbedResponse:
    return pb.EmbedResponse(
        vectors=[pb.Vector(values=row.tolist()) for row in result.vectors],
        total_tokens=result.total_tokens,
        model=result.model,
    )
