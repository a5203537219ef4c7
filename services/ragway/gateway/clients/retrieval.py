"""The retrieval service as the gateway sees it: collections, documents, search and embeddings in
domain types. This module is the only gateway code that builds or reads retrieval protobufs, so the
transport can change without touching a route (as qdrant-client hides its REST and gRPC behind one
interface)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from google.protobuf import json_format, struct_pb2

from ragway.core.errors import InvalidArgument
from ragway.gateway.clients.base import ServiceClient
from ragway.v1 import retrieval_pb2, retrieval_pb2_grpc


@dataclass(frozen=True)
class IndexSettings:
    """Index parameters of a new collection; 0 / empty take the backend's defaults. Each backend
    reads the fields that apply to it (HNSW and on-disk vectors: Qdrant; index type, HNSW and
    nlist: Milvus)."""

    hnsw_m: int = 0
    hnsw_ef_construct: int = 0
    on_disk: bool = False
    milvus_index_type: str = ""
    ivf_nlist: int = 0


@dataclass(frozen=True)
class CollectionStats:
    document_count: int
    vector_count: int
    index: IndexSettings = IndexSettings()
    sparse_encoder: str = ""  # empty: no sparse vectors, so hybrid search runs dense
    embedder: str = ""  # the embedder the collection was built with


@dataclass(frozen=True)
class SearchSettings:
    """How the retrieval service searches: the retriever (`mode`: dense, sparse, hybrid; None =
    the service's default), how hybrid fuses its two lists, the second-stage ranker ("auto",
    "none" or "cross-encoder") and the approximate index's recall knobs (0 = defaults)."""

    mode: Literal["dense", "sparse", "hybrid"] | None = None
    fusion: Literal["rrf", "dbsf"] = "rrf"
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    prefetch_limit: int = 0
    ranker: Literal["auto", "none", "cross-encoder"] = "auto"
    rerank_candidates: int = 0
    ef: int = 0
    nprobe: int = 0


@dataclass(frozen=True)
class EmbeddingModel:
    """One embedder the retrieval service serves."""

    name: str
    dimension: int
    max_tokens: int  # of one text; the rest is cut


@dataclass(frozen=True)
class ServiceInfo:
    """What the retrieval service runs with, for readiness details and ranker checks."""

    backend: str
    embedder: str
    sparse_encoder: str
    reranker: str  # empty: no cross-encoder
    notes: list[str]
    embedders: list[EmbeddingModel] = field(default_factory=list)  # the default (`embedder`) first
    rankers: list[str] = field(default_factory=list)  # what the service ranks with itself


@dataclass(frozen=True)
class Condition:
    """One metadata condition; exactly one of `equals`, `any_of`, `range` is set."""

    key: str
    equals: str | int | float | bool | None = None
    any_of: list[str | int | float | bool] | None = None
    range: dict[str, float] | None = None  # gt / gte / lt / lte


@dataclass(frozen=True)
class Filter:
    """A metadata filter the retrieval service's store evaluates itself (retrieval.proto's
    Filter): every `must` clause holds, at least one `should` clause holds when there are any, and
    no `must_not` clause holds. A clause is a Condition or a nested Filter. A condition on a key a
    chunk lacks is false (so `must_not` keeps that chunk)."""

    must: tuple[Condition | Filter, ...] = ()
    should: tuple[Condition | Filter, ...] = ()
    must_not: tuple[Condition | Filter, ...] = ()


@dataclass
class RetrievedChunk:
    """One chunk a search found: what it says, where it lives, how well it matched."""

    collection: str  # the collection's name as its owner sees it
    document_id: str
    chunk_index: int
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunking:
    """How to cut one document: chunk size and overlap in embedder tokens."""

    chunk_tokens: int
    overlap_tokens: int


@dataclass(frozen=True)
class DocumentUpload:
    """A document to write: text or file bytes with their content type."""

    id: str
    content: str | bytes
    content_type: str
    metadata: dict[str, Any]
    chunking: Chunking | None = None  # None: the retrieval service's defaults


@dataclass(frozen=True)
class DocumentSummary:
    id: str
    chunks: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class DocumentPage:
    documents: list[DocumentSummary]
    next_after: str  # empty on the last page


@dataclass(frozen=True)
class StoredDocument:
    id: str
    metadata: dict[str, Any]
    chunks: list[tuple[int, str]]  # (index, text), in order


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    total_tokens: int
    model: str


def metadata_struct(metadata: dict[str, Any]) -> struct_pb2.Struct:
    """Metadata as the Struct the retrieval service stores; a non-JSON value is a 400 naming it."""
    out = struct_pb2.Struct()
    try:
        out.update(metadata)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"metadata must be a JSON object: {exc}", field="metadata") from exc
    return out


def _value(value: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    json_format.ParseDict(value, out)
    return out


_MODES = {
    None: retrieval_pb2.SEARCH_MODE_UNSPECIFIED,
    "dense": retrieval_pb2.SEARCH_MODE_DENSE,
    "sparse": retrieval_pb2.SEARCH_MODE_SPARSE,
    "hybrid": retrieval_pb2.SEARCH_MODE_HYBRID,
}
_FUSIONS = {"rrf": retrieval_pb2.FUSION_RRF, "dbsf": retrieval_pb2.FUSION_DBSF}


def _search_request(
    collection: str,
    query: str,
    top_k: int,
    where: Filter | None,
    min_score: float | None,
    settings: SearchSettings,
) -> retrieval_pb2.SearchRequest:
    request = retrieval_pb2.SearchRequest(
        collection=collection,
        text=query,
        top_k=top_k,
        filter=_filter(where) if where is not None else None,
        mode=_MODES[settings.mode],
        hybrid=retrieval_pb2.HybridOptions(
            fusion=_FUSIONS[settings.fusion],
            dense_weight=settings.dense_weight,
            sparse_weight=settings.sparse_weight,
            prefetch_limit=settings.prefetch_limit,
        ),
        ranking_options=retrieval_pb2.RankingOptions(
            ranker=settings.ranker, candidates=settings.rerank_candidates
        ),
        params=retrieval_pb2.SearchParams(ef=settings.ef, nprobe=settings.nprobe),
    )
    if min_score is not None:
        request.score_threshold = min_score
    return request


def _index(index: retrieval_pb2.IndexParams) -> IndexSettings:
    return IndexSettings(
        hnsw_m=int(index.hnsw_m),
        hnsw_ef_construct=int(index.hnsw_ef_construct),
        on_disk=bool(index.on_disk),
        milvus_index_type=index.milvus_index_type,
        ivf_nlist=int(index.ivf_nlist),
    )


def _clause(clause: Condition | Filter) -> retrieval_pb2.FieldCondition:
    if isinstance(clause, Filter):
        return retrieval_pb2.FieldCondition(filter=_filter(clause))
    if clause.any_of is not None:
        any_of = struct_pb2.ListValue()
        for item in clause.any_of:
            any_of.values.append(_value(item))
        return retrieval_pb2.FieldCondition(key=clause.key, any_of=any_of)
    if clause.range is not None:
        return retrieval_pb2.FieldCondition(key=clause.key, range=retrieval_pb2.Range(**clause.range))
    return retrieval_pb2.FieldCondition(key=clause.key, equals=_value(clause.equals))


def _filter(where: Filter) -> retrieval_pb2.Filter:
    return retrieval_pb2.Filter(
        must=[_clause(c) for c in where.must],
        should=[_clause(c) for c in where.should],
        must_not=[_clause(c) for c in where.must_not],
    )


class RetrievalClient(ServiceClient):
    """Calls take the store-side collection name; mapping users to collections is the caller's job."""

    service = "retrieval"

    def __init__(
        self,
        address: str,
        rpc_timeout: float,
        write_timeout: float = 600.0,
        embed_timeout: float = 120.0,
        interceptors: list[Any] | None = None,
    ) -> None:
        super().__init__(address, rpc_timeout, interceptors)
        self.stub = retrieval_pb2_grpc.RetrievalServiceStub(self.channel)
        self.write_timeout = write_timeout
        self.embed_timeout = embed_timeout
        self._embedders: dict[str, str] = {}  # a collection's embedder is fixed at its creation

    async def create_collection(
        self, collection: str, index: IndexSettings = IndexSettings(), embedder: str = ""
    ) -> None:
        """A new collection built with `embedder` (the retrieval service's default for "")."""
        await self.unary(
            self.stub.CreateCollection,
            retrieval_pb2.CreateCollectionRequest(
                name=collection,
                embedder=embedder,
                index=retrieval_pb2.IndexParams(
                    hnsw_m=index.hnsw_m,
                    hnsw_ef_construct=index.hnsw_ef_construct,
                    on_disk=index.on_disk,
                    milvus_index_type=index.milvus_index_type,
                    ivf_nlist=index.ivf_nlist,
                ),
            ),
        )

    async def describe(self, collection: str) -> CollectionStats:
        info = await self.unary(
            self.stub.DescribeCollection, retrieval_pb2.DescribeCollectionRequest(name=collection)
        )
        return CollectionStats(
            document_count=int(info.document_count),
            vector_count=int(info.vector_count),
            index=_index(info.index),
            sparse_encoder=info.sparse_encoder,
            embedder=info.embedder,
        )

    async def embedder(self, collection: str) -> str:
        """The embedder a collection was built with ("" when the service does not say); asked
        once per collection, as it never changes."""
        if collection not in self._embedders:
            self._embedders[collection] = (await self.describe(collection)).embedder
        return self._embedders[collection]

    async def describe_service(self, timeout: float | None = None) -> ServiceInfo:
        info = await self.unary(self.stub.DescribeService, retrieval_pb2.DescribeServiceRequest(), timeout)
        return ServiceInfo(
            backend=info.backend,
            embedder=info.embedder,
            sparse_encoder=info.sparse_encoder,
            reranker=info.reranker,
            notes=list(info.notes),
            embedders=[EmbeddingModel(e.name, int(e.dimension), int(e.max_tokens)) for e in info.embedders],
            rankers=list(info.rankers),
        )

    async def delete_collection(self, collection: str) -> int:
        reply = await self.unary(
            self.stub.DeleteCollection, retrieval_pb2.DeleteCollectionRequest(name=collection)
        )
        return int(reply.deleted_vectors)

    async def upsert(self, collection: str, documents: Sequence[DocumentUpload]) -> dict[str, int]:
        """Write documents whole (replacing earlier versions); chunks written per document id."""
        request = retrieval_pb2.UpsertDocumentsRequest(collection=collection)
        for doc in documents:
            entry = request.documents.add(
                id=doc.id, content_type=doc.content_type, metadata=metadata_struct(doc.metadata)
            )
            if isinstance(doc.content, str):
                entry.text = doc.content
            else:
                entry.data = doc.content
            if doc.chunking is not None:
                entry.chunking.chunk_tokens = doc.chunking.chunk_tokens
                entry.chunking.overlap_tokens = doc.chunking.overlap_tokens
        reply = await self.unary(self.stub.UpsertDocuments, request, timeout=self.write_timeout)
        return {d.id: int(d.chunks) for d in reply.documents}

    async def delete(self, collection: str, document_ids: Sequence[str]) -> int:
        """Delete documents with every chunk; the number of vectors removed."""
        reply = await self.unary(
            self.stub.DeleteDocuments,
            retrieval_pb2.DeleteDocumentsRequest(collection=collection, ids=list(document_ids)),
        )
        return int(reply.deleted_vectors)

    async def get_document(self, collection: str, document_id: str) -> StoredDocument:
        doc = await self.unary(
            self.stub.GetDocument, retrieval_pb2.GetDocumentRequest(collection=collection, id=document_id)
        )
        return StoredDocument(
            id=doc.id,
            metadata=json_format.MessageToDict(doc.metadata),
            chunks=[(int(c.index), c.text) for c in doc.chunks],
        )

    async def list_documents(self, collection: str, limit: int, after: str = "") -> DocumentPage:
        reply = await self.unary(
            self.stub.ListDocuments,
            retrieval_pb2.ListDocumentsRequest(collection=collection, limit=limit, after=after),
        )
        return DocumentPage(
            documents=[
                DocumentSummary(id=d.id, chunks=int(d.chunks), metadata=json_format.MessageToDict(d.metadata))
                for d in reply.documents
            ],
            next_after=reply.next_after,
        )

    async def search(
        self,
        collection: str,
        query: str,
        top_k: int,
        where: Filter | None = None,
        min_score: float | None = None,
        settings: SearchSettings = SearchSettings(),
        *,
        label: str = "",
    ) -> list[RetrievedChunk]:
        """Best chunks first among those `where` keeps (the store filters, so every match can be
        found however unlike the query it is); `label` is the collection name reported on each
        chunk. `min_score` cuts on the score of the mode that runs (cosine when no mode is given:
        see SearchRequest)."""
        request = _search_request(collection, query, top_k, where, min_score, settings)
        reply = await self.unary(self.stub.Search, request)
        return [
            RetrievedChunk(
                collection=label or collection,
                document_id=h.document_id,
                chunk_index=int(h.chunk_index),
                score=float(h.score),
                text=h.text,
                metadata=json_format.MessageToDict(h.metadata),
            )
            for h in reply.hits
        ]

    async def embed(self, texts: Sequence[str], model: str = "") -> Embeddings:
        """Vectors by the embedder called `model` (the service's default for "")."""
        reply = await self.unary(
            self.stub.Embed,
            retrieval_pb2.EmbedRequest(texts=list(texts), model=model),
            timeout=self.embed_timeout,
        )
        return Embeddings(
            vectors=[list(v.values) for v in reply.vectors],
            total_tokens=int(reply.total_tokens),
            model=reply.model,
        )
