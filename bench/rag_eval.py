"""Retrieval quality on real corpora nobody on the team wrote: the Python 3.11 documentation, the
Git manual and the Flask documentation (Debian's python3.11-doc, git-doc, python-flask-doc).

    python bench/rag_eval.py                         # the retrieval gRPC API, in-process service
    python bench/rag_eval.py --corpus-name git       # python | git | flask
    python bench/rag_eval.py --corpus-name flask --data-dir /tmp/eval   # keep the ingest, reuse it
    python bench/rag_eval.py --retrieval 127.0.0.1:50052
    python bench/rag_eval.py --gateway http://127.0.0.1:8000 --api-key KEY
    python bench/rag_eval.py --corpus DIR --questions q.json   # another corpus (HTML/MD/TXT/PDF)

The default corpus is Debian's python3.11-doc (HTML, installed by scripts/install_system.sh), the
folders tutorial, howto, faq, library, reference and using: about 380 pages; `git` is git-doc's
242 pages (man pages, guides, howto/, technical/), `flask` python-flask-doc's 74 content pages.
Pages are uploaded as a user would, one document per page, its path relative to the corpus folder
as the document id. Questions (bench/rag_eval_questions*.py, or a JSON list of {"question",
"pages"}) are written the way people ask, from the pages and before any retrieval result was seen;
each names the pages that answer it, and a hit on any of them counts.

Measured, all in one run, on page ids (chunk hits reduced to their pages, first hit first):
  through the API: dense, sparse, hybrid and hybrid + rerank (rerank only with --reranker or a
    service that has a cross-encoder);
  baselines on plain fixed-size chunks of the same pages (150 words, 30 shared; no headings, no
    structure): BM25 (bm25s, Snowball stemmer, English stopwords), dense (the same MiniLM, exact
    cosine), the RRF of their chunk lists and the RRF of their page lists ("page RRF": each list
    reduced to pages first, a page ranked by its best chunk).
It prints recall@1, recall@5, MRR@10 and p50/p95 search latency per row, then the issue's targets
with a verdict. With --data-dir, the ingested collection (one per corpus) and the baseline's chunk
vectors are kept there and reused: a fusion change needs no re-embedding. --dump writes each
question's dense and sparse candidate lists, which bench/fusion_ablation.py fuses offline.

With --model HOST:PORT (a running model service) and --llm-rerank 10,20,30, the hybrid rows gain
"hybrid + LLM rerank@N": the first N hybrid chunks scored by the served model's Score call (UPR: the
mean log-probability of the question after each passage, its first --passage-tokens tokens read),
exactly the call the gateway's `ranker: "llm"` makes, reordered by it; latency is the search plus
the Score call (see llm_reranked for how one call per question serves every count). gRPC API only
(the in-process or a running retrieval service). A model service for it:
    RAGWAY_MODEL_PORT=50061 RAGWAY_MODEL_METRICS_PORT=0 ragway model &
    python bench/rag_eval.py --corpus-name git --model 127.0.0.1:50061

Through the gateway, searches send the JSON fields the gateway takes from issue 17:
  {"query", "top_k", "mode": "dense"|"sparse"|"hybrid",
   "hybrid": {"fusion": "rrf"|"dbsf", "dense_weight", "sparse_weight"},
   "ranking_options": {"ranker": "none"|"auto"|"cross-encoder"}}
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
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

import rag_eval_questions  # noqa: E402
import rag_eval_questions_flask  # noqa: E402
import rag_eval_questions_git  # noqa: E402

from ragway.core.content_types import CONTENT_TYPES  # noqa: E402
from ragway.core.grpc_server import GRPC_OPTIONS  # noqa: E402
from ragway.retrieval.config import RetrievalSettings  # noqa: E402
from ragway.retrieval.embedder import Embedder  # noqa: E402
from ragway.retrieval.parsing import parse  # noqa: E402
from ragway.retrieval.server import RunningServer, start_server  # noqa: E402
from ragway.v1 import model_pb2, model_pb2_grpc, retrieval_pb2_grpc  # noqa: E402
from ragway.v1 import retrieval_pb2 as pb  # noqa: E402


@dataclass(frozen=True)
class Corpus:
    path: Path
    sections: tuple[str, ...]  # sub-folders to use; () = all
    exclude: tuple[str, ...]  # pages that are navigation, not content (Sphinx's indexes)
    questions: list[tuple[str, list[str]]]
    package: str  # the Debian package scripts/install_system.sh installs


CORPORA = {
    "python": Corpus(
        Path("/usr/share/doc/python3.11/html"),
        ("tutorial", "howto", "faq", "library", "reference", "using"),
        (),
        rag_eval_questions.QUESTIONS,
        "python3.11-doc",
    ),
    "git": Corpus(Path("/usr/share/doc/git/html"), (), (), rag_eval_questions_git.QUESTIONS, "git-doc"),
    "flask": Corpus(
        Path("/usr/share/doc/python-flask-doc/html"),
        (),
        ("genindex.html", "search.html", "py-modindex.html", "404.html"),
        rag_eval_questions_flask.QUESTIONS,
        "python-flask-doc",
    ),
}
COLLECTION = "rag-eval"  # + "-<corpus name>"
CANDIDATES = 30  # chunks fetched per question; pages are ranked by their first hit
CANDIDATES_DUMP = 100  # chunks per retriever in --dump (the most a search returns; hybrid prefetches 120)
WINDOW_WORDS, OVERLAP_WORDS = 150, 30
RRF_K = 60
BASELINES = ("BM25", "dense", "RRF(BM25, dense)", "page RRF")
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


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    """(p50, p95) of `values`; NaNs for none."""
    if not values:
        return float("nan"), float("nan")
    p50, p95 = np.percentile(values, [50, 95])
    return float(p50), float(p95)


def pages_of(chunk_pages: Sequence[str]) -> list[str]:
    """Chunk hits reduced to pages, in order of each page's first hit."""
    return list(dict.fromkeys(chunk_pages))


def find_pages(
    corpus: Path, sections: Sequence[str], exclude: Sequence[str] = (), suffixes: Sequence[str] = ()
) -> list[Path]:
    """Pages under `sections` (all for none) with one of `suffixes` (every known type for none)."""
    roots = [corpus / s for s in sections] if sections else [corpus]
    return sorted(
        p
        for root in roots
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in (suffixes or CONTENT_TYPES)
        and str(p.relative_to(corpus)) not in exclude
    )


def load_questions(path: Path | None, builtin: list[tuple[str, list[str]]]) -> list[tuple[str, set[str]]]:
    if path is None:
        return [(q, set(pages)) for q, pages in builtin]
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


def rrf(*rankings: list[Any]) -> list[Any]:
    """Plain RRF (k = 60) of ranked lists of chunk indexes or page ids."""
    scores: dict[Any, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1 / (RRF_K + rank)
    return sorted(scores, key=lambda item: -scores[item])


def embed_cached(embedder: Embedder, texts: list[str], cache: Path | None) -> np.ndarray:
    """The baseline's chunk vectors, kept in `cache` (keyed by the texts) when one is given."""
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    path = cache / f"baseline-{digest}.npy" if cache else None
    if path is not None and path.exists():
        return np.load(path)
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    print(f"  baseline dense: {len(texts):,} plain chunks embedded in {time.perf_counter() - started:.0f} s")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def baselines(
    texts: list[str], pages: list[str], questions: Sequence[str], embedder: Embedder, cache: Path | None
) -> dict[str, list[list[str]]]:
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    query_tokens = bm25s.tokenize(list(questions), stopwords="en", stemmer=stemmer, show_progress=False)
    k = min(100, len(texts))
    bm25_ids, _ = retriever.retrieve(query_tokens, k=k, show_progress=False)
    chunk_vectors = embed_cached(embedder, texts, cache)
    query_vectors = embedder.embed(list(questions))
    dense_ids = np.argsort(-(query_vectors @ chunk_vectors.T), axis=1)[:, :k]
    out: dict[str, list[list[str]]] = {"BM25": [], "dense": [], "RRF(BM25, dense)": [], "page RRF": []}
    for bm25_row, dense_row in zip(bm25_ids.tolist(), dense_ids.tolist(), strict=True):
        bm25_pages = pages_of([pages[i] for i in bm25_row])
        dense_pages = pages_of([pages[i] for i in dense_row])
        out["BM25"].append(bm25_pages)
        out["dense"].append(dense_pages)
        out["RRF(BM25, dense)"].append(pages_of([pages[i] for i in rrf(bm25_row, dense_row)]))
        out["page RRF"].append(rrf(bm25_pages, dense_pages))
    return out


# -- the API: the retrieval service over gRPC, or the gateway over HTTP ---------------------------

Search = Callable[[str, str, str], Awaitable[list[str]]]  # (question, mode, ranker) -> page ids
Candidates = Callable[[str, str, int], Awaitable[list[tuple[str, int, str]]]]  # (question, mode, n) -> chunks


def batches(files: Sequence[Path]) -> list[list[Path]]:
    out: list[list[Path]] = [[]]
    size = 0
    for path in files:
        if out[-1] and size + path.stat().st_size > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(path)
        size += path.stat().st_size
    return [group for group in out if group]


async def grpc_api(
    address: str, corpus: Path, files: Sequence[Path], collection: str, reuse: bool = False
) -> tuple[Search, str, float, int, Candidates]:
    channel = grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)
    stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
    with_reranker = (await stub.DescribeService(pb.DescribeServiceRequest())).reranker
    names = {c.name for c in (await stub.ListCollections(pb.ListCollectionsRequest())).collections}
    if collection in names and reuse:
        info = await stub.DescribeCollection(pb.DescribeCollectionRequest(name=collection))
        print(f"reusing the ingested collection ({info.document_count} documents)")
        files = []
    elif collection in names:
        await stub.DeleteCollection(pb.DeleteCollectionRequest(name=collection))
    if not files and not reuse:
        raise SystemExit("no files to ingest")
    if files:
        await stub.CreateCollection(pb.CreateCollectionRequest(name=collection))
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
            pb.UpsertDocumentsRequest(collection=collection, documents=docs), timeout=3600
        )
        chunks += reply.chunks_written
    ingest_s = time.perf_counter() - started
    modes = {"dense": pb.SEARCH_MODE_DENSE, "sparse": pb.SEARCH_MODE_SPARSE, "hybrid": pb.SEARCH_MODE_HYBRID}

    async def search(question: str, mode: str, ranker: str) -> list[str]:
        mode, _, fusion = mode.partition("-")
        request = pb.SearchRequest(
            collection=collection,
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

    async def candidates(question: str, mode: str, n: int) -> list[tuple[str, int, str]]:
        request = pb.SearchRequest(
            collection=collection, text=question, top_k=n, mode=modes[mode],
            ranking_options=pb.RankingOptions(ranker="none"),
        )  # fmt: skip
        return [(h.document_id, h.chunk_index, h.text) for h in (await stub.Search(request)).hits]

    return search, with_reranker, ingest_s, chunks, candidates


def in_mode(search: Search, mode: str, ranker: str) -> Callable[[str], Awaitable[list[str]]]:
    async def run(question: str) -> list[str]:
        return await search(question, mode, ranker)

    return run


async def passage_scores(
    model: model_pb2_grpc.ModelServiceStub, question: str, texts: list[str], passage_tokens: int
) -> list[float]:
    if not texts:
        return []
    request = model_pb2.ScoreRequest(query=question, passages=texts, max_passage_tokens=passage_tokens)
    reply = await model.Score(request, timeout=600)
    by_index = {s.index: s.score for s in reply.scores}
    return [by_index[i] for i in range(len(texts))]


async def llm_reranked(
    model: model_pb2_grpc.ModelServiceStub,
    candidates: Candidates,
    questions: Sequence[str],
    counts: Sequence[int],
    passage_tokens: int,
) -> tuple[dict[int, list[list[str]]], dict[int, list[list[str]]], dict[int, list[float]]]:
    """For each count n: each question's pages of its first n hybrid chunks reordered by the model's
    Score, as the gateway's ranker "llm" returns them (rag/rerank.py: the candidates only); the same
    fused with the hybrid order by RRF; and the search + Score latency in ms.

    One Score call over the most candidates gives every count's order: the first n hybrid chunks
    are the n-candidate rerank's input, and each passage is its own prompt, scored alone, so the
    call's first n scores are what a call with those n would give. Timing is another matter: a call
    made after another over the same passages reads their KV blocks from the prefix cache and is
    several times faster. So each question times one count, in turn, with the question's first
    call; the ranking call over the most candidates follows it, untimed."""
    most = max(counts)
    rankings: dict[int, list[list[str]]] = {n: [] for n in counts}
    fused: dict[int, list[list[str]]] = {n: [] for n in counts}
    times: dict[int, list[float]] = {n: [] for n in counts}
    for i, question in enumerate(questions):
        timed = counts[i % len(counts)]
        started = time.perf_counter()
        head = await candidates(question, "hybrid", timed)
        scores = await passage_scores(model, question, [text for _, _, text in head], passage_tokens)
        times[timed].append((time.perf_counter() - started) * 1000)
        chunks = head
        if timed != most:
            chunks = await candidates(question, "hybrid", most)
            scores = await passage_scores(model, question, [text for _, _, text in chunks], passage_tokens)
        for n in counts:
            order = sorted(range(min(n, len(chunks))), key=lambda k: scores[k], reverse=True)
            rankings[n].append(pages_of([chunks[k][0] for k in order]))
            # The same scores fused with the hybrid order (RRF of the two ranks): how much of the
            # first stage a weak reranker should keep.
            fused[n].append(pages_of([chunks[k][0] for k in rrf(list(range(min(n, len(chunks)))), order)]))
        print(f"  LLM rerank: {i + 1}/{len(questions)} questions", end="\r", flush=True)
    print()
    return rankings, fused, times


async def http_api(
    base_url: str, api_key: str, corpus: Path, files: Sequence[Path], collection: str
) -> tuple[Search, str, float, int]:
    http = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=3600)
    if (await http.get(f"/v1/collections/{collection}")).status_code == 200:
        (await http.delete(f"/v1/collections/{collection}")).raise_for_status()
    (await http.post("/v1/collections", json={"name": collection})).raise_for_status()
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
        response = await http.post(f"/v1/collections/{collection}/documents", json={"documents": docs})
        response.raise_for_status()
        chunks += sum(d["chunks"] for d in response.json()["data"])
    ingest_s = time.perf_counter() - started

    async def search(question: str, mode: str, ranker: str) -> list[str]:
        mode, _, fusion = mode.partition("-")
        body: dict[str, Any] = {"query": question, "top_k": CANDIDATES, "mode": mode}
        body["hybrid"] = {"fusion": fusion or "rrf"}
        body["ranking_options"] = {"ranker": ranker}
        response = await http.post(f"/v1/collections/{collection}/search", json=body)
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
    parser.add_argument("--corpus-name", choices=sorted(CORPORA), default="python", help="a built-in corpus")
    parser.add_argument("--corpus", type=Path, help="folder of pages (default: the named corpus's)")
    parser.add_argument("--sections", help="sub-folders to use; empty = all (default: the named corpus's)")
    parser.add_argument("--questions", type=Path, help="JSON [{question, pages}]; default: the built-in set")
    parser.add_argument(
        "--retrieval", help="a running retrieval service (host:port); default: start one here"
    )
    parser.add_argument("--gateway", help="a running gateway URL: ingest and search through its HTTP API")
    parser.add_argument("--api-key", default="", help="gateway API key")
    parser.add_argument("--reranker", default="", help="CrossEncoder folder for the in-process service")
    parser.add_argument("--model", help="a running model service (host:port): the LLM reranker's Score")
    parser.add_argument(
        "--llm-rerank", default="10,20,30", help="with --model: candidate counts the LLM rescores"
    )
    parser.add_argument(
        "--passage-tokens",
        type=int,
        default=128,
        help="tokens of each passage the LLM reads (the gateway's default: 128)",
    )
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
    parser.add_argument(
        "--dump", type=Path, help="write each question's dense and sparse candidates (JSON) here"
    )
    args = parser.parse_args()

    named = CORPORA[args.corpus_name]
    custom = args.corpus is not None
    args.corpus = args.corpus or named.path
    sections = named.sections if args.sections is None and not custom else (args.sections or "").split(",")
    if not args.corpus.is_dir():
        raise SystemExit(f"{args.corpus} is missing: run scripts/install_system.sh ({named.package})")
    # The named corpora are HTML; git-doc and Sphinx ship each page's source as .txt beside it.
    exclude, suffixes = ((), ()) if custom else (named.exclude, (".html",))
    files = find_pages(args.corpus, [s for s in sections if s], exclude, suffixes)
    questions = load_questions(args.questions, named.questions)
    collection = f"{COLLECTION}-{args.corpus_name}" if not custom else COLLECTION
    ids = {str(p.relative_to(args.corpus)) for p in files}
    unknown = sorted({page for _, good in questions for page in good} - ids)
    if unknown and args.partial:
        questions = [(q, good & ids) for q, good in questions if good & ids]
    elif unknown:
        raise SystemExit(f"accepted pages not in the corpus: {unknown} (--partial drops them)")
    print(
        f"corpus: {len(files)} pages, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB; "
        f"{len(questions)} questions ({args.corpus_name if not custom else args.corpus})"
    )

    embedder = Embedder()
    running: RunningServer | None = None
    tmp = tempfile.TemporaryDirectory(prefix="ragway-eval-")
    try:
        if args.gateway:
            search, reranker, ingest_s, chunks = await http_api(
                args.gateway, args.api_key, args.corpus, files, collection
            )
            candidates = None
            reranker = args.reranker  # the gateway's service is configured on its side
        else:
            address = args.retrieval
            if address is None:
                settings = RetrievalSettings(
                    data_dir=args.data_dir or Path(tmp.name), port=0, metrics_port=0, reranker=args.reranker
                )
                running = await start_server(settings, port=0, embedder=embedder)
                address = f"127.0.0.1:{running.port}"
            search, reranker, ingest_s, chunks, candidates = await grpc_api(
                address, args.corpus, files, collection, reuse=args.data_dir is not None
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
        searches: dict[str, Callable[[str], Awaitable[list[str]]]] = {
            label: in_mode(search, mode, ranker) for label, mode, ranker in runs
        }
        latencies: dict[str, list[float]] = {label: [] for label in searches}
        rankings: dict[str, list[list[str]]] = {label: [] for label in searches}
        # Question by question, every mode in turn: a burst of load from elsewhere on the machine
        # slows all modes alike instead of one mode's whole run.
        for question in texts:
            for label, run in searches.items():
                started = time.perf_counter()
                rankings[label].append(await run(question))
                latencies[label].append((time.perf_counter() - started) * 1000)
        for label in searches:
            rows[label] = score(rankings[label], accepted)
        if args.model and candidates is not None:
            model = model_pb2_grpc.ModelServiceStub(
                grpc.aio.insecure_channel(args.model, options=GRPC_OPTIONS)
            )
            counts = sorted(int(v) for v in args.llm_rerank.split(",") if v)
            by_count, fused, times = await llm_reranked(model, candidates, texts, counts, args.passage_tokens)
            for n in counts:
                rows[f"API hybrid + LLM rerank@{n}"] = score(by_count[n], accepted)
                latencies[f"API hybrid + LLM rerank@{n}"] = times[n]
                rows[f"API hybrid RRF LLM@{n}"] = score(fused[n], accepted)
                latencies[f"API hybrid RRF LLM@{n}"] = times[n]
        if args.dump and candidates is not None:
            dump = [
                {
                    "question": q,
                    "pages": sorted(good),
                    "dense": [c[:2] for c in await candidates(q, "dense", CANDIDATES_DUMP)],
                    "sparse": [c[:2] for c in await candidates(q, "sparse", CANDIDATES_DUMP)],
                }
                for q, good in questions
            ]
            args.dump.parent.mkdir(parents=True, exist_ok=True)
            args.dump.write_text(json.dumps(dump))
        plain_texts, plain_pages = plain_chunks(args.corpus, files)
        cache = args.data_dir / "baseline" / args.corpus_name if args.data_dir and not custom else None
        for name, pages_ranked in baselines(plain_texts, plain_pages, texts, embedder, cache).items():
            rows[f"baseline {name}"] = score(pages_ranked, accepted)
    finally:
        if running is not None:
            await running.stop()
        embedder.close()
        tmp.cleanup()

    print(f"\n{'':28}{'recall@1':>10}{'recall@5':>10}{'MRR@10':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for label, s in rows.items():
        p50, p95 = (f"{v:.0f}" for v in percentiles(latencies[label])) if label in latencies else ("-", "-")
        print(f"{label:28}{s.recall_1:>10.3f}{s.recall_5:>10.3f}{s.mrr_10:>10.3f}{p50:>10}{p95:>10}")
    if not reranker:
        print("API hybrid + rerank: not measured (no cross-encoder: pass --reranker FOLDER)")
    hybrid, dense = rows["API hybrid"], rows["API dense"]
    best = {
        "recall_5": max(rows[f"baseline {b}"].recall_5 for b in BASELINES),
        "mrr_10": max(rows[f"baseline {b}"].mrr_10 for b in BASELINES),
    }
    # (what, measured, target, higher is better)
    checks = [
        ("hybrid recall@5 >= best baseline", hybrid.recall_5, best["recall_5"], True),
        ("hybrid MRR@10 >= best baseline", hybrid.mrr_10, best["mrr_10"], True),
        ("hybrid MRR@10 >= API dense + 0.05", hybrid.mrr_10, dense.mrr_10 + 0.05, True),
    ]
    for label in (k for k in rows if "LLM" in k):
        checks += [
            (f"{label[4:]} MRR@10 >= best baseline + 0.03", rows[label].mrr_10, best["mrr_10"] + 0.03, True),
            (f"{label[4:]} search p95 <= 2 s", percentiles(latencies[label])[1] / 1000, 2.0, False),
        ]
    if "API hybrid + rerank" in rows:
        reranked = rows["API hybrid + rerank"]
        checks += [
            ("hybrid+rerank MRR@10 >= hybrid", reranked.mrr_10, hybrid.mrr_10, True),
            ("hybrid+rerank recall@5 >= hybrid", reranked.recall_5, hybrid.recall_5, True),
        ]
    print()
    for name, value, target, higher in checks:
        ok = value >= target - 1e-9 if higher else value <= target + 1e-9
        print(f"{name:48} {value:.3f} vs {target:.3f}  {'PASS' if ok else 'FAIL'}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            k: {**vars(v), **dict(zip(("p50_ms", "p95_ms"), percentiles(latencies.get(k, [])), strict=True))}
            for k, v in rows.items()
        }
        args.out.write_text(json.dumps({"corpus": args.corpus_name, "rows": figures}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
