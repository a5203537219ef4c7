"""Retrieval quality on a real corpus nobody on the team wrote: the Python 3.11 documentation.

    python bench/rag_eval.py                         # the retrieval gRPC API, in-process service
    python bench/rag_eval.py --retrieval 127.0.0.1:50052
    python bench/rag_eval.py --gateway http://127.0.0.1:8000 --api-key KEY
    python bench/rag_eval.py --corpus DIR --questions q.json   # another corpus (HTML/MD/TXT/PDF)

The corpus is Debian's python3.11-doc (HTML, installed by scripts/install_system.sh), the folders
tutorial, howto, faq, library, reference and using: about 380 pages, uploaded as a user would,
one document per page, its path relative to the corpus folder as the document id. Questions
(bench/rag_eval_questions.py, or a JSON list of {"question", "pages"}) are written the way people
ask; each names the pages that answer it, and a hit on any of them counts.

Measured, all in one run, on page ids (chunk hits reduced to their pages, first hit first):
  through the API: dense, sparse, hybrid and hybrid + rerank (rerank only with --reranker or a
    service that has a cross-encoder);
  baselines on plain fixed-size chunks of the same pages (150 words, 30 shared; no headings, no
    structure): BM25 (bm25s, Snowball stemmer, English stopwords), dense (the same MiniLM, exact
    cosine) and the RRF of the two.
It prints recall@1, recall@5 and MRR@10 per row, then the issue's targets with a verdict.

Through the gateway, searches send the JSON fields the gateway takes from issue 17:
  {"query", "top_k", "mode": "dense"|"sparse"|"hybrid",
   "hybrid": {"fusion": "rrf"|"dbsf", "dense_weight", "sparse_weight"},
   "ranking_options": {"ranker": "none"|"auto"|"cross-encoder"}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import grpc
import httpx
import numpy as np
import Stemmer

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

from rag_eval_questions import QUESTIONS  # noqa: E402

from ragway.core.grpc_server import GRPC_OPTIONS  # noqa: E402
from ragway.retrieval.config import RetrievalSettings  # noqa: E402
from ragway.retrieval.embedder import Embedder  # noqa: E402
from ragway.retrieval.parsing import parse  # noqa: E402
from ragway.retrieval.server import RunningServer, start_server  # noqa: E402
from ragway.v1 import retrieval_pb2 as pb  # noqa: E402
from ragway.v1 import retrieval_pb2_grpc  # noqa: E402

CORPUS = Path("/usr/share/doc/python3.11/html")
SECTIONS = ("tutorial", "howto", "faq", "library", "reference", "using")
CONTENT_TYPES = {".html": "text/html", ".htm": "text/html", ".md": "text/markdown", ".txt": "text/plain",
                 ".pdf": "application/pdf"}  # fmt: skip
COLLECTION = "rag-eval"
CANDIDATES = 30  # chunks fetched per question; pages are ranked by their first hit
WINDOW_WORDS, OVERLAP_WORDS = 150, 30
RRF_K = 60
BATCH_BYTES = 4 * 1024 * 1024


@dataclass
class Scores:
    recall_1: float
    recall_5: float
    mrr_10: float


def score(rankings: Sequence[list[str]], accepted: Sequence[set[str]]) -> Scores:
    r1, r5, mrr = [], [], []
    for pages, good in zip(rankings, accepted, strict=True):
        rank = next((i for i, page in enumerate(pages[:10], start=1) if page in good), None)
        r1.append(rank == 1)
        r5.append(rank is not None and rank <= 5)
        mrr.append(1 / rank if rank else 0.0)
    return Scores(statistics.mean(r1), statistics.mean(r5), statistics.mean(mrr))


def pages_of(chunk_pages: Sequence[str]) -> list[str]:
    """Chunk hits reduced to pages, in order of each page's first hit."""
    return list(dict.fromkeys(chunk_pages))


def find_pages(corpus: Path, sections: Sequence[str]) -> list[Path]:
    roots = [corpus / s for s in sections] if sections else [corpus]
    return sorted(
        p for root in roots for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CONTENT_TYPES
    )


def load_questions(path: Path | None) -> list[tuple[str, set[str]]]:
    if path is None:
        return [(q, set(pages)) for q, pages in QUESTIONS]
    return [(item["question"], set(item["pages"])) for item in json.loads(path.read_text())]


# -- baselines: plain fixed-size chunks of the same pages ------------------------------------------


def plain_chunks(corpus: Path, files: Sequence[Path]) -> tuple[list[str], list[str]]:
    """(texts, page ids): each page's extracted text cut into fixed word windows."""
    texts, pages = [], []
    step = WINDOW_WORDS - OVERLAP_WORDS
    for path in files:
        sections = parse(path.read_bytes(), CONTENT_TYPES[path.suffix.lower()])
        words = " ".join(f"{s.heading} {s.text}" for s in sections).split()
        for start in range(0, max(len(words) - OVERLAP_WORDS, 1), step):
            texts.append(" ".join(words[start : start + WINDOW_WORDS]))
            pages.append(str(path.relative_to(corpus)))
    return texts, pages


def rrf(*rankings: list[int]) -> list[int]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1 / (RRF_K + rank)
    return sorted(scores, key=lambda item: -scores[item])


def baselines(
    texts: list[str], pages: list[str], questions: Sequence[str], embedder: Embedder
) -> dict[str, list[list[str]]]:
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    query_tokens = bm25s.tokenize(list(questions), stopwords="en", stemmer=stemmer, show_progress=False)
    k = min(100, len(texts))
    bm25_ids, _ = retriever.retrieve(query_tokens, k=k, show_progress=False)
    started = time.perf_counter()
    chunk_vectors = embedder.embed(texts)
    print(f"  baseline dense: {len(texts):,} plain chunks embedded in {time.perf_counter() - started:.0f} s")
    query_vectors = embedder.embed(list(questions))
    dense_ids = np.argsort(-(query_vectors @ chunk_vectors.T), axis=1)[:, :k]
    out: dict[str, list[list[str]]] = {"BM25": [], "dense": [], "RRF(BM25, dense)": []}
    for bm25_row, dense_row in zip(bm25_ids.tolist(), dense_ids.tolist(), strict=True):
        out["BM25"].append(pages_of([pages[i] for i in bm25_row]))
        out["dense"].append(pages_of([pages[i] for i in dense_row]))
        out["RRF(BM25, dense)"].append(pages_of([pages[i] for i in rrf(bm25_row, dense_row)]))
    return out


# -- the API: the retrieval service over gRPC, or the gateway over HTTP ---------------------------

Search = Callable[[str, str, str], Awaitable[list[str]]]  # (question, mode, ranker) -> page ids


def batches(files: Sequence[Path]) -> list[list[Path]]:
    out: list[list[Path]] = [[]]
    size = 0
    for path in files:
        if out[-1] and size + path.stat().st_size > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(path)
        size += path.stat().st_size
    return out


async def grpc_api(
    address: str, corpus: Path, files: Sequence[Path], reuse: bool = False
) -> tuple[Search, str, float, int]:
    channel = grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)
    stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
    with_reranker = (await stub.DescribeService(pb.DescribeServiceRequest())).reranker
    names = {c.name for c in (await stub.ListCollections(pb.ListCollectionsRequest())).collections}
    if COLLECTION in names and reuse:
        info = await stub.DescribeCollection(pb.DescribeCollectionRequest(name=COLLECTION))
        print(f"reusing the ingested collection ({info.document_count} documents)")
        files = []
    elif COLLECTION in names:
        await stub.DeleteCollection(pb.DeleteCollectionRequest(name=COLLECTION))
    if not files and not reuse:
        raise SystemExit("no files to ingest")
    if files:
        await stub.CreateCollection(pb.CreateCollectionRequest(name=COLLECTION))
    started = time.perf_counter()
    chunks = 0
    for group in batches(files):
        docs = [
            pb.DocumentInput(
                id=str(p.relative_to(corpus)),
                data=p.read_bytes(),
                content_type=CONTENT_TYPES[p.suffix.lower()],
            )
            for p in group
        ]
        reply = await stub.UpsertDocuments(
            pb.UpsertDocumentsRequest(collection=COLLECTION, documents=docs), timeout=3600
        )
        chunks += reply.chunks_written
    ingest_s = time.perf_counter() - started
    modes = {"dense": pb.SEARCH_MODE_DENSE, "sparse": pb.SEARCH_MODE_SPARSE, "hybrid": pb.SEARCH_MODE_HYBRID}

    async def search(question: str, mode: str, ranker: str) -> list[str]:
        mode, _, fusion = mode.partition("-")
        request = pb.SearchRequest(
            collection=COLLECTION,
            text=question,
            top_k=CANDIDATES,
            mode=modes[mode],
            hybrid=pb.HybridOptions(fusion=pb.FUSION_DBSF if fusion == "dbsf" else pb.FUSION_RRF),
            ranking_options=pb.RankingOptions(ranker=ranker),
        )
        reply = await stub.Search(request)
        if reply.fallback_reason:
            raise SystemExit(f"{mode} search fell back: {reply.fallback_reason}")
        return pages_of([h.document_id for h in reply.hits])

    return search, with_reranker, ingest_s, chunks


async def http_api(
    base_url: str, api_key: str, corpus: Path, files: Sequence[Path]
) -> tuple[Search, str, float, int]:
    http = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=3600)
    if (await http.get(f"/v1/collections/{COLLECTION}")).status_code == 200:
        (await http.delete(f"/v1/collections/{COLLECTION}")).raise_for_status()
    (await http.post("/v1/collections", json={"name": COLLECTION})).raise_for_status()
    started = time.perf_counter()
    chunks = 0
    for group in batches(files):
        docs = [
            {
                "id": str(p.relative_to(corpus)),
                "text": p.read_text(errors="replace"),
                "content_type": CONTENT_TYPES[p.suffix.lower()],
            }
            for p in group
        ]
        response = await http.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": docs})
        response.raise_for_status()
        chunks += sum(d["chunks"] for d in response.json()["data"])
    ingest_s = time.perf_counter() - started

    async def search(question: str, mode: str, ranker: str) -> list[str]:
        mode, _, fusion = mode.partition("-")
        body: dict[str, Any] = {"query": question, "top_k": CANDIDATES, "mode": mode}
        body["hybrid"] = {"fusion": fusion or "rrf"}
        body["ranking_options"] = {"ranker": ranker}
        response = await http.post(f"/v1/collections/{COLLECTION}/search", json=body)
        if response.status_code >= 400:
            raise SystemExit(
                f"the gateway refused a {mode} search: {response.status_code} {response.text[:300]}"
            )
        return pages_of([c["document_id"] for c in response.json()["data"]])

    return search, "", ingest_s, chunks


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help="folder of pages (default: python3.11-doc)"
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help="sub-folders to use; empty = all")
    parser.add_argument("--questions", type=Path, help="JSON [{question, pages}]; default: the built-in set")
    parser.add_argument(
        "--retrieval", help="a running retrieval service (host:port); default: start one here"
    )
    parser.add_argument("--gateway", help="a running gateway URL: ingest and search through its HTTP API")
    parser.add_argument("--api-key", default="", help="gateway API key")
    parser.add_argument("--reranker", default="", help="CrossEncoder folder for the in-process service")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="on a part of the corpus (--sections): keep only the questions answered there, by those pages",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the in-process service's data folder; kept, and reused when it holds the corpus",
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    if not args.corpus.is_dir():
        raise SystemExit(f"{args.corpus} is missing: run scripts/install_system.sh (python3.11-doc)")
    files = find_pages(args.corpus, [s for s in args.sections.split(",") if s])
    questions = load_questions(args.questions)
    ids = {str(p.relative_to(args.corpus)) for p in files}
    unknown = sorted({page for _, good in questions for page in good} - ids)
    if unknown and args.partial:
        questions = [(q, good & ids) for q, good in questions if good & ids]
    elif unknown:
        raise SystemExit(f"accepted pages not in the corpus: {unknown} (--partial drops them)")
    print(
        f"corpus: {len(files)} pages, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB; "
        f"{len(questions)} questions"
    )

    embedder = Embedder()
    running: RunningServer | None = None
    tmp = tempfile.TemporaryDirectory(prefix="ragway-eval-")
    try:
        if args.gateway:
            search, reranker, ingest_s, chunks = await http_api(
                args.gateway, args.api_key, args.corpus, files
            )
            reranker = args.reranker  # the gateway's service is configured on its side
        else:
            address = args.retrieval
            if address is None:
                settings = RetrievalSettings(
                    data_dir=args.data_dir or Path(tmp.name), port=0, metrics_port=0, reranker=args.reranker
                )
                running = await start_server(settings, port=0, embedder=embedder)
                address = f"127.0.0.1:{running.port}"
            search, reranker, ingest_s, chunks = await grpc_api(
                address, args.corpus, files, reuse=args.data_dir is not None
            )
        print(
            f"ingest through the API: {chunks:,} chunks in {ingest_s:.0f} s "
            f"({chunks / max(ingest_s, 1e-9):.1f} chunks/s)"
        )

        texts = [q for q, _ in questions]
        accepted = [good for _, good in questions]
        rows: dict[str, Scores] = {}
        runs = [
            ("API dense", "dense", "none"),
            ("API sparse", "sparse", "none"),
            ("API hybrid", "hybrid", "none"),
            ("API hybrid (DBSF)", "hybrid-dbsf", "none"),
        ]
        if reranker:
            runs.append(("API hybrid + rerank", "hybrid", "cross-encoder"))
        latencies: dict[str, list[float]] = {}
        for label, mode, ranker in runs:
            rankings = []
            latencies[label] = []
            for question in texts:
                started = time.perf_counter()
                rankings.append(await search(question, mode, ranker))
                latencies[label].append((time.perf_counter() - started) * 1000)
            rows[label] = score(rankings, accepted)
        plain_texts, plain_pages = plain_chunks(args.corpus, files)
        for name, rankings in baselines(plain_texts, plain_pages, texts, embedder).items():
            rows[f"baseline {name}"] = score(rankings, accepted)
    finally:
        if running is not None:
            await running.stop()
        embedder.close()
        tmp.cleanup()

    print(f"\n{'':28}{'recall@1':>10}{'recall@5':>10}{'MRR@10':>10}{'p50 ms':>10}")
    for label, s in rows.items():
        p50 = f"{statistics.median(latencies[label]):.0f}" if label in latencies else "-"
        print(f"{label:28}{s.recall_1:>10.3f}{s.recall_5:>10.3f}{s.mrr_10:>10.3f}{p50:>10}")
    if not reranker:
        print("API hybrid + rerank: not measured (no cross-encoder: pass --reranker FOLDER)")
    hybrid, dense = rows["API hybrid"], rows["API dense"]
    best = {
        "recall_5": max(rows[f"baseline {b}"].recall_5 for b in ("BM25", "dense", "RRF(BM25, dense)")),
        "mrr_10": max(rows[f"baseline {b}"].mrr_10 for b in ("BM25", "dense", "RRF(BM25, dense)")),
    }
    checks = [
        ("hybrid recall@5 >= best baseline", hybrid.recall_5, best["recall_5"]),
        ("hybrid MRR@10 >= best baseline", hybrid.mrr_10, best["mrr_10"]),
        ("hybrid MRR@10 >= API dense + 0.05", hybrid.mrr_10, dense.mrr_10 + 0.05),
    ]
    if "API hybrid + rerank" in rows:
        reranked = rows["API hybrid + rerank"]
        checks += [
            ("hybrid+rerank MRR@10 >= hybrid", reranked.mrr_10, hybrid.mrr_10),
            ("hybrid+rerank recall@5 >= hybrid", reranked.recall_5, hybrid.recall_5),
        ]
    print()
    for name, value, target in checks:
        print(f"{name:40} {value:.3f} vs {target:.3f}  {'PASS' if value >= target - 1e-9 else 'FAIL'}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({k: vars(v) for k, v in rows.items()}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
