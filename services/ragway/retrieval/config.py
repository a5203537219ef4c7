"""Retrieval service settings (env prefix RAGWAY_RETRIEVAL_; the data folder is RAGWAY_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _data_dir() -> Path:
    return Path(os.environ.get("RAGWAY_DATA_DIR", ".ragway"))


class RetrievalSettings(BaseSettings):
    """Where vectors live and how documents become chunks; the same service runs on an embedded
    store in the data folder or against a Qdrant / Milvus server."""

    model_config = SettingsConfigDict(env_prefix="RAGWAY_RETRIEVAL_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 50052
    metrics_port: int = Field(default=9102, description="Prometheus /metrics port; 0 disables it.")
    data_dir: Path = Field(default_factory=_data_dir, description="RAGWAY_DATA_DIR (default ./.ragway).")
    backend: Literal["qdrant", "milvus"] = "qdrant"
    qdrant_url: str = Field(default="", description="Qdrant server URL; empty = embedded, <data_dir>/qdrant.")
    qdrant_api_key: str = ""
    milvus_uri: str = Field(
        default="", description="Milvus server URI; empty = Milvus Lite, <data_dir>/milvus.db."
    )
    milvus_token: str = ""
    embedder_path: str = Field(
        default="",
        description="sentence-transformers folder of the default embedder; empty = all-MiniLM-L6-v2.",
    )
    extra_embedders: list[str] = Field(
        default_factory=list,
        description="More sentence-transformers folders to serve, each named by its folder (JSON list). "
        "Keep a former default here: its collections stay searchable.",
    )
    reranker: str = Field(
        default="",
        description="Cross-encoder for ranker=auto|cross-encoder: a local CrossEncoder folder, or a hub id "
        "already in the local cache; empty = no reranking (no package ships such weights).",
    )
    rerank_candidates: int = Field(
        default=30, ge=1, le=100, description="Candidates the cross-encoder rescores per search."
    )
    embed_batch_size: int = Field(default=64, ge=1, le=1024, description="Texts per embedder call.")
    chunk_tokens: int = Field(default=200, ge=16, description="Default chunk size in embedder tokens.")
    overlap_tokens: int = Field(default=40, ge=0, description="Default tokens shared by consecutive chunks.")
    max_document_bytes: int = Field(default=32 * 1024 * 1024, description="Largest document accepted.")
    optimize_after_points: int = Field(
        default=10_000,
        description="Embedded Qdrant: at start, index collections with this many unindexed points.",
    )
    drain_seconds: float = Field(default=10.0, description="On SIGTERM, how long in-flight calls may finish.")
    log_level: str = "INFO"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def milvus_path(self) -> Path:
        return self.data_dir / "milvus.db"


def get_settings() -> RetrievalSettings:
    return RetrievalSettings()
