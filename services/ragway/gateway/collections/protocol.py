"""Request and response types of `/v1/collections`: collections, their documents, search."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ragway.gateway.chat_completion.protocol import Citation
from ragway.gateway.core.wire import StrictModel
from ragway.gateway.rag.protocol import IndexOptions, SearchTuning


class CollectionCreate(StrictModel):
    name: str = Field(min_length=1, max_length=64)
    shared: bool = Field(False, description="Readable by every user (admins only).")
    index: IndexOptions | None = Field(None, description="Index parameters; unset = the backend's defaults.")
    embedding_model: str | None = Field(
        None,
        max_length=256,
        description="Embedding model to build it with (see /v1/models); unset = the default.",
    )


class CollectionOut(BaseModel):
    name: str
    shared: bool
    owned: bool
    document_count: int
    vector_count: int
    created_at: int
    index: IndexOptions | None = Field(None, description="Index parameters in effect (unset = defaults).")
    hybrid: bool = Field(False, description="Holds sparse (BM25) vectors: sparse and hybrid search work.")
    embedding_model: str = Field(
        "", description="The embedding model it was built with; every query uses it."
    )


class CollectionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CollectionOut]


class DocumentIn(StrictModel):
    id: str | None = Field(None, min_length=1, max_length=256)
    text: str = Field(min_length=1)
    content_type: Literal["text/plain", "text/markdown", "text/html"] = "text/plain"
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentBatch(StrictModel):
    documents: list[DocumentIn] = Field(min_length=1, max_length=100)


class DocumentReplace(StrictModel):
    text: str = Field(min_length=1)
    content_type: Literal["text/plain", "text/markdown", "text/html"] = "text/plain"
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentWritten(BaseModel):
    id: str
    filename: str | None = None
    chunks: int
    status: Literal["created", "updated", "unchanged"]


class DocumentWrittenList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentWritten]


class DocumentSummaryOut(BaseModel):
    id: str
    chunks: int
    metadata: dict[str, Any]


class DocumentSummaryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentSummaryOut]
    has_more: bool
    last_id: str | None = None


class ChunkOut(BaseModel):
    index: int
    text: str


class DocumentOut(BaseModel):
    id: str
    metadata: dict[str, Any]
    chunks: list[ChunkOut]


class SearchIn(SearchTuning):
    query: str = Field(min_length=1, max_length=10_000)
    top_k: int = Field(5, ge=1, le=100)
    filter: dict[str, Any] | None = None
    min_score: float | None = Field(None, ge=-1.0, le=1.0)
    embedding_model: str | None = Field(
        None,
        max_length=256,
        description="The embedding model the caller means; a 400 unless the collection was built with it.",
    )


class SearchOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[Citation]
