"""Hybrid fusion variants scored offline on the candidate lists bench/rag_eval.py --dump wrote.

    python bench/rag_eval.py --corpus-name git --data-dir /tmp/eval --dump /tmp/eval/git.json
    python bench/fusion_ablation.py /tmp/eval/python.json /tmp/eval/git.json /tmp/eval/flask.json

Each dump holds, per question, the service's dense and sparse chunk lists (100 each, the most a
search returns; hybrid search prefetches 120 for top_k 30, so figures differ slightly from the
API's) and the accepted pages. Every variant fuses the same two lists, so the differences are the
fusion's alone; `service` is fusion.fuse_by_document as it is in the tree. Prints MRR@10 (by page)
per corpus and variant, and their mean.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from rag_eval import pages_of, score  # noqa: E402

from ragway.retrieval.fusion import fuse_by_document  # noqa: E402
from ragway.retrieval.stores.base import StoredChunk  # noqa: E402

Chunk = tuple[str, int]
Fuse = Callable[[list[Chunk], list[Chunk]], list[str]]  # (dense, sparse) -> pages, best first
TOP_K = 30


def service(top_k: int = TOP_K) -> Fuse:
    """fusion.fuse_by_document on the lists hybrid search prefetches for `top_k` (4 top_k, 40 at
    least), its `top_k` chunks reduced to pages."""

    def fuse(dense: list[Chunk], sparse: list[Chunk]) -> list[str]:
        depth = max(4 * top_k, 40)
        fused = fuse_by_document(stored(dense[:depth]), stored(sparse[:depth]), (1.0, 1.0), top_k)
        return pages_of([c.document_id for c in fused])

    return fuse


def stored(hits: list[Chunk]) -> list[StoredChunk]:
    return [StoredChunk(doc, idx, 1, "") for doc, idx in hits]


def page_rrf_scores(k: float, depth: int = 120) -> Callable[[list[Chunk], list[Chunk]], dict[str, float]]:
    """A page scores sum of 1 / (k + the rank of its best chunk in each chunk list)."""

    def scores(dense: list[Chunk], sparse: list[Chunk]) -> dict[str, float]:
        out: dict[str, float] = {}
        for hits in (dense[:depth], sparse[:depth]):
            best: dict[str, int] = {}
            for rank, (page, _) in enumerate(hits, start=1):
                best.setdefault(page, rank)
            for page, rank in best.items():
                out[page] = out.get(page, 0.0) + 1 / (k + rank)
        return out

    return scores


def page_rrf_chunk_ranks(k: float, depth: int = 120) -> Fuse:
    """Pages by page_rrf_scores: documents fused on their best chunks' ranks (no rank compression)."""
    by_page = page_rrf_scores(k, depth)

    def fuse(dense: list[Chunk], sparse: list[Chunk]) -> list[str]:
        scores = by_page(dense, sparse)
        return sorted(scores, key=lambda page: -scores[page])

    return fuse


def rrf(rankings: Sequence[Sequence[object]], k: float, weights: Sequence[float] | None = None) -> list:
    scores: dict[object, float] = {}
    for ranking, w in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
    return sorted(scores, key=lambda i: -scores[i])


def page_rrf(k: float, depth: int = 120, weights: tuple[float, float] = (1.0, 1.0)) -> Fuse:
    """Each list reduced to pages (a page's rank is its place among pages), then RRF."""
    return lambda d, s: rrf([pages_of([p for p, _ in hits[:depth]]) for hits in (d, s)], k, weights)


def chunk_rrf(k: float, depth: int = 120) -> Fuse:
    """RRF of the chunk lists, pages by their best fused chunk."""
    return lambda d, s: pages_of([p for p, _ in rrf([d[:depth], s[:depth]], k)])


def document_rrf(k: float = 60, depth: int = 120) -> Fuse:
    """The former default: each list reduced to documents (ranked by their best chunk), the two
    document rankings fused by RRF. (The prefetch of top_k 30 is 120; dumps hold 100.)"""
    return page_rrf(k, depth)


def blend(beta: float, k: float = 60) -> Fuse:
    """A page's best fused chunk plus beta times its document-level RRF on best-chunk ranks."""
    by_page = page_rrf_scores(k)

    def fuse(dense: list[Chunk], sparse: list[Chunk]) -> list[str]:
        chunk_scores: dict[Chunk, float] = {}
        for hits in (dense, sparse):
            for rank, c in enumerate(hits, start=1):
                chunk_scores[c] = chunk_scores.get(c, 0.0) + 1 / (k + rank)
        best: dict[str, float] = {}
        for (page, _), v in chunk_scores.items():
            best[page] = max(best.get(page, 0.0), v)
        pages = by_page(dense, sparse)
        total = {p: best[p] + beta * pages[p] for p in best}
        return sorted(total, key=lambda p: -total[p])

    return fuse


def single(which: int) -> Fuse:
    return lambda d, s: pages_of([p for p, _ in (d, s)[which]])


VARIANTS: dict[str, Fuse] = {
    "dense alone": single(0),
    "sparse alone": single(1),
    "service (fusion.py)": service(),
    "service top_k 10": service(10),
    "former: document RRF": document_rrf(),
    **{f"blend beta={b}": blend(b) for b in (0.25, 0.5, 1.0)},
    **{f"page RRF chunk ranks k={k}": page_rrf_chunk_ranks(k) for k in (2, 5, 10, 20, 60)},
    **{f"page RRF k={k}": page_rrf(k) for k in (1, 5, 10, 20, 30, 60)},
    **{f"page RRF k=60 depth {n}": page_rrf(60, n) for n in (30, 60)},
    **{f"page RRF k=10 depth {n}": page_rrf(10, n) for n in (30, 60)},
    **{f"chunk RRF k={k}": chunk_rrf(k) for k in (10, 30, 60, 100)},
    "chunk RRF k=60 depth 40": chunk_rrf(60, 40),
    "chunk RRF k=60 depth 100": chunk_rrf(60, 100),
    "page RRF k=60 w=1.5/1": page_rrf(60, weights=(1.5, 1.0)),
    "page RRF k=10 w=1.5/1": page_rrf(10, weights=(1.5, 1.0)),
}


def main() -> None:
    corpora = {Path(p).stem: json.loads(Path(p).read_text()) for p in sys.argv[1:]}
    table: dict[str, dict[str, float]] = {}
    for name, fuse in VARIANTS.items():
        for corpus, items in corpora.items():
            rankings = [fuse([tuple(c) for c in q["dense"]], [tuple(c) for c in q["sparse"]]) for q in items]
            table.setdefault(name, {})[corpus] = score(rankings, [set(q["pages"]) for q in items]).mrr_10
    print(f"{'MRR@10':32}" + "".join(f"{c:>10}" for c in corpora) + f"{'mean':>10}")
    for name, row in table.items():
        cells = "".join(f"{row[c]:>10.3f}" for c in corpora)
        print(f"{name:32}{cells}{statistics.mean(row.values()):>10.3f}")


if __name__ == "__main__":
    main()
