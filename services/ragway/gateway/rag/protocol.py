"""Search and index options as the HTTP API takes them (ragway extensions), shared by
`/v1/collections` (create, search), the chat `rag` option and `/v1/vector_stores` (create, search).

One definition, so the three routes accept the same JSON and refuse the same mistakes: unknown
keys and out-of-range values are 400s naming the field before any RPC. Whether a ranker is
available depends on the retrieval service's configuration, so that check is `rag.search`'s.

    {"mode": "hybrid",
     "hybrid": {"fusion": "rrf", "dense_weight": 1, "sparse_weight": 1, "prefetch_limit": 100},
     "ranking_options": {"ranker": "auto", "candidates": 30},
     "params": {"ef": 256, "nprobe": 16}}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ragway.core.limits import (
    MAX_EF,
    MAX_FUSION_WEIGHT,
    MAX_HNSW_EF_CONSTRUCT,
    MAX_HNSW_M,
    MAX_IVF_NLIST,
    MAX_NPROBE,
    MAX_PREFETCH,
    MAX_RERANK_CANDIDATES,
)
from ragway.gateway.clients.retrieval import IndexSettings, SearchSettings
from ragway.gateway.core.wire import StrictModel

# The longest time budget a request may give the LLM reranker.
MAX_RERANK_BUDGET_MS = 120_000


class HybridOptions(StrictModel):
    """How hybrid search fuses the dense and the sparse (BM25) lists."""

    fusion: Literal["rrf", "dbsf"] = Field("rrf", description="Reciprocal rank or distribution-based fusion.")
    dense_weight: float = Field(1.0, ge=0.0, le=MAX_FUSION_WEIGHT, description="Weight of the dense list.")
    sparse_weight: float = Field(1.0, ge=0.0, le=MAX_FUSION_WEIGHT, description="Weight of the sparse list.")
    prefetch_limit: int | None = Field(
        None, ge=1, le=MAX_PREFETCH, description="Candidates each list brings to the fusion."
    )

    @model_validator(mode="after")
    def _some_weight(self) -> HybridOptions:
        if self.dense_weight == 0 and self.sparse_weight == 0:
            raise ValueError("dense_weight and sparse_weight cannot both be 0")
        return self


class SearchParams(StrictModel):
    """Recall against speed of the approximate index."""

    ef: int | None = Field(None, ge=1, le=MAX_EF, description="HNSW search beam (Qdrant, Milvus HNSW).")
    nprobe: int | None = Field(None, ge=1, le=MAX_NPROBE, description="IVF clusters probed (Milvus IVF_*).")


class RankingOptions(StrictModel):
    """The second stage, as every search API names it: "auto" (or OpenAI's "default-2024-11-15":
    the configured cross-encoder, if any), "none", "llm" (the served language model scores the
    candidates, rag.rerank), or "cross-encoder" / the cross-encoder's name (a 400 when the
    service has none; rag.search.resolve_ranker). Each API adds the fields it honours."""

    ranker: str = Field("auto", min_length=1, max_length=256)


class RankingTuning(RankingOptions):
    """ragway's search routes (collections search, chat `rag`): the ranker, plus how many
    first-stage hits it rescores and the LLM reranker's time budget."""

    candidates: int | None = Field(
        None, ge=1, le=MAX_RERANK_CANDIDATES, description="First-stage hits the reranker rescores."
    )
    budget_ms: int | None = Field(
        None,
        ge=1,
        le=MAX_RERANK_BUDGET_MS,
        description="ranker llm: the rerank's time budget; past it the first-stage order is kept. "
        "Default RAGWAY_RERANK_TIMEOUT_SECONDS.",
    )


class SearchTuning(StrictModel):
    """Mode, fusion, reranking and index parameters of one search (all optional)."""

    mode: Literal["dense", "sparse", "hybrid"] | None = Field(
        None,
        description="Retriever: dense (embeddings), sparse (BM25) or hybrid (both fused). Default hybrid, "
        "or dense when a minimum score is given (its scale is cosine similarity).",
    )
    hybrid: HybridOptions | None = None
    ranking_options: RankingTuning | None = None
    params: SearchParams | None = None

    def settings(self, ranker: Literal["auto", "none", "cross-encoder", "llm"]) -> SearchSettings:
        """The client's settings, with the ranker `rag.search.resolve_ranker` resolved (the LLM
        reranker runs in the gateway: the retrieval service then ranks nothing itself)."""
        hybrid = self.hybrid or HybridOptions()
        params = self.params or SearchParams()
        return SearchSettings(
            mode=self.mode,
            fusion=hybrid.fusion,
            dense_weight=hybrid.dense_weight,
            sparse_weight=hybrid.sparse_weight,
            prefetch_limit=hybrid.prefetch_limit or 0,
            ranker="none" if ranker == "llm" else ranker,
            rerank_candidates=(self.ranking_options.candidates or 0) if self.ranking_options else 0,
            ef=params.ef or 0,
            nprobe=params.nprobe or 0,
        )


class IndexOptions(StrictModel):
    """Index parameters of a new collection / vector store; unset takes the backend's defaults."""

    hnsw_m: int | None = Field(
        None, ge=4, le=MAX_HNSW_M, description="HNSW graph degree (Qdrant, Milvus HNSW)."
    )
    hnsw_ef_construct: int | None = Field(
        None, ge=4, le=MAX_HNSW_EF_CONSTRUCT, description="HNSW build beam width."
    )
    on_disk: bool = Field(False, description="Qdrant: keep dense vectors memory-mapped on disk.")
    milvus_index_type: str | None = Field(
        None, min_length=1, max_length=32, description="Milvus: AUTOINDEX, HNSW, IVF_FLAT, IVF_SQ8, ..."
    )
    ivf_nlist: int | None = Field(
        None, ge=1, le=MAX_IVF_NLIST, description="Milvus IVF_*: number of clusters."
    )

    @classmethod
    def of(cls, index: IndexSettings) -> IndexOptions:
        """The parameters a collection reports: the backend's defaults stay unset."""
        return cls(
            hnsw_m=index.hnsw_m or None,
            hnsw_ef_construct=index.hnsw_ef_construct or None,
            on_disk=index.on_disk,
            milvus_index_type=index.milvus_index_type or None,
            ivf_nlist=index.ivf_nlist or None,
        )

    def settings(self) -> IndexSettings:
        return IndexSettings(
            hnsw_m=self.hnsw_m or 0,
            hnsw_ef_construct=self.hnsw_ef_construct or 0,
            on_disk=self.on_disk,
            milvus_index_type=self.milvus_index_type or "",
            ivf_nlist=self.ivf_nlist or 0,
        )
