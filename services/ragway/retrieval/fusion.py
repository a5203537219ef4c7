"""Hybrid search's reciprocal rank fusion, by document: which documents the two retrievers rank
high, then which of their chunks to show first.

Each ranked chunk list ranks a document at its best chunk's place *in the chunk list* (MaxP, Dai &
Callan 2019: the relevance a user asks about is mostly a property of the document, as relevant
as its best passage), the two are fused with weighted RRF (sum of weight / (k + rank), ranks from
1, k = 5), and chunks come out document by document: a document's n-th chunk (in chunk-level RRF
order) scores its document's score / n, so the best documents lead with their best chunks and a
long document does not fill the whole list. For documents of one chunk this is plain RRF.

Measured on three corpora (bench/rag_eval.py --corpus-name python|git|flask, the variants in
bench/fusion_ablation.py), two choices decide it:

- Fusing documents, not chunks. The two retrievers often find *different chunks of the right
  document* (the embedding the passage that paraphrases the question, BM25 the one that repeats
  its words); chunk-level RRF sees no agreement there and rewards generic chunks both rank
  middling. It lost on the Python documentation (MRR@10 0.78 against 0.84 by document).
- Ranking a document where its best chunk is in the chunk list, with a small k. The former
  default ranked documents by their place among documents, with k = 60 (the TREC constant, for
  lists of 1,000): that compresses a list of 120 chunks into 20-40 documents whose RRF scores
  differ by a few percent, so a long page (a user manual, a reference of every option) that has
  *some* chunk somewhere in both lists outscored the page one retriever ranked first. It lost to
  a plain RRF of BM25 and dense on the Git manual and the Flask documentation (issue 26). With
  chunk ranks and k = 5, a document's first chunk at place 1 counts 1/6, at place 20 1/25.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from ragway.retrieval.stores.base import StoredChunk

Item = TypeVar("Item", bound=Hashable)

# RRF's k for hybrid search (the module docstring says why 5, not the TREC constant 60).
RRF_K = 5


def _key(chunk: StoredChunk) -> tuple[str, int, int]:
    return chunk.document_id, chunk.version, chunk.index


def _rrf(rankings: Sequence[Sequence[tuple[Item, int]]], weights: Sequence[float]) -> dict[Item, float]:
    """Weighted RRF of rankings given as (item, rank) pairs; an item's first pair counts."""
    scores: dict[Item, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        best: dict[Item, int] = {}
        for item, rank in ranking:
            best.setdefault(item, rank)
        for item, rank in best.items():
            scores[item] = scores.get(item, 0.0) + weight / (RRF_K + rank)
    return scores


def fuse_by_document(
    dense: Sequence[StoredChunk], sparse: Sequence[StoredChunk], weights: tuple[float, float], limit: int
) -> list[StoredChunk]:
    """The best `limit` chunks of the two ranked lists, fused as the module docstring says."""
    lists = (dense, sparse)
    # A document's rank in a list is its best chunk's rank among chunks, not among documents.
    documents = _rrf([[(c.document_id, r) for r, c in enumerate(hits, start=1)] for hits in lists], weights)
    chunk_scores = _rrf([[(_key(c), r) for r, c in enumerate(hits, start=1)] for hits in lists], weights)
    chunks = {_key(c): c for hits in lists for c in hits}
    seen: dict[str, int] = {}
    fused: list[StoredChunk] = []
    for key in sorted(chunk_scores, key=lambda k: -chunk_scores[k]):
        chunk = chunks[key]
        if chunk_scores[key] <= 0:  # only in a list of weight 0
            continue
        seen[chunk.document_id] = seen.get(chunk.document_id, 0) + 1
        chunk.score = documents[chunk.document_id] / seen[chunk.document_id]
        fused.append(chunk)
    return sorted(fused, key=lambda c: -c.score)[:limit]
