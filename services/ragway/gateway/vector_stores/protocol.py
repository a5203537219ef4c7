"""Request and response types of `/v1/vector_stores`, in OpenAI's shapes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ragway.gateway.core.wire import Metadata, StrictModel
from ragway.gateway.rag.protocol import HybridOptions, IndexOptions, RankingOptions, SearchParams

Attributes = dict[str, str | float | bool]


class StaticChunking(StrictModel):
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class ChunkingStrategy(StrictModel):
    """`{"type": "auto"}` or `{"type": "static", "static": {...}}`."""

    type: Literal["auto", "static"]
    static: StaticChunking | None = None


class ExpiresAfter(StrictModel):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class VectorStoreCreate(StrictModel):
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata | None = None
    expires_after: ExpiresAfter | None = None
    # ragway: an admin's store that every user may read (and only admins write).
    shared: bool = False
    # ragway: index parameters of the store's collection (HNSW m / ef_construct, on-disk vectors,
    # Milvus index type and nlist); unset takes the backend's defaults.
    index: IndexOptions | None = None


class VectorStoreUpdate(StrictModel):
    name: str | None = Field(None, max_length=256)
    metadata: Metadata | None = None
    expires_after: ExpiresAfter | None = None


class FileCounts(BaseModel):
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class VectorStoreObject(BaseModel):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str
    usage_bytes: int
    file_counts: FileCounts
    status: Literal["expired", "in_progress", "completed"]
    expires_after: dict[str, Any] | None = None
    expires_at: int | None = None
    last_active_at: int | None = None
    metadata: dict[str, str] | None = None
    # ragway: shared by an admin (read-only for other users).
    shared: bool = False


class VectorStoreList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStoreObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VectorStoreDeleted(BaseModel):
    id: str
    object: Literal["vector_store.deleted"] = "vector_store.deleted"
    deleted: bool = True


class VectorStoreFileCreate(StrictModel):
    file_id: str = Field(min_length=1, max_length=64)
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class VectorStoreFileUpdate(StrictModel):
    attributes: Attributes | None


class LastError(BaseModel):
    code: str
    message: str


class VectorStoreFileObject(BaseModel):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    created_at: int
    usage_bytes: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    last_error: LastError | None = None
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class VectorStoreFileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStoreFileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VectorStoreFileDeleted(BaseModel):
    id: str
    object: Literal["vector_store.file.deleted"] = "vector_store.file.deleted"
    deleted: bool = True


class ContentPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class VectorStoreFileContent(BaseModel):
    object: Literal["vector_store.file_content.page"] = "vector_store.file_content.page"
    data: list[ContentPart]
    has_more: bool = False
    next_page: str | None = None


class BatchFile(StrictModel):
    file_id: str = Field(min_length=1, max_length=64)
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class FileBatchCreate(StrictModel):
    file_ids: list[str] | None = Field(None, max_length=2000)
    files: list[BatchFile] | None = Field(None, max_length=2000)
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class FileBatchObject(BaseModel):
    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    file_counts: FileCounts


class VectorStoreRanking(RankingOptions):
    """OpenAI's: the ranker, and `score_threshold`, a cut on cosine similarity unless `mode` is
    given (then on that mode's scores). OpenAI's shape has no candidate count or time budget: the
    LLM reranker takes the settings' (rag.vector_stores.find_chunks)."""

    score_threshold: float | None = Field(None, ge=0.0, le=1.0)


class VectorStoreSearch(StrictModel):
    query: str | list[str]
    filters: dict[str, Any] | None = None
    max_num_results: int = Field(10, ge=1, le=50)
    ranking_options: VectorStoreRanking | None = None
    rewrite_query: bool = False
    # ragway: the retriever (dense, sparse, hybrid; default hybrid), its fusion and the index's
    # search parameters, as on /v1/collections/{name}/search.
    mode: Literal["dense", "sparse", "hybrid"] | None = None
    hybrid: HybridOptions | None = None
    params: SearchParams | None = None


class SearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any] | None = None
    content: list[ContentPart]


class SearchPage(BaseModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool = False
    next_page: str | None = None
