"""Prometheus metrics of the retrieval service (served on RAGWAY_RETRIEVAL_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CHUNKS_INGESTED = Counter("ragway_retrieval_chunks_ingested", "Chunks embedded and written.")
DOCUMENTS_INGESTED = Counter("ragway_retrieval_documents_ingested", "Documents upserted.")
EMBEDDED_TEXTS = Counter("ragway_retrieval_embedded_texts", "Texts embedded (chunks, queries, Embed calls).")
EMBED_BATCH_SECONDS = Histogram(
    "ragway_retrieval_embedding_batch_seconds",
    "Time to embed one batch of texts.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SEARCH_SECONDS = Histogram(
    "ragway_retrieval_search_seconds",
    "Search latency inside the service, query embedding and reranking included.",
    ["mode"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
RERANK_SECONDS = Histogram(
    "ragway_retrieval_rerank_seconds",
    "Time to score one search's candidates with the cross-encoder.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POINTS = Gauge("ragway_retrieval_points", "Chunks (vectors) stored per collection.", ["collection"])
