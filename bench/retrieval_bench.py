"""Retrieval service benchmark: ratios measured in one run, on both backends.

    python bench/retrieval_bench.py                    # 100,000 chunks, both backends (~15 min, 2 cores)
    python bench/retrieval_bench.py --chunks 20000 --backends qdrant

Per backend, in a fresh temporary folder:
  1. store part (synthetic clustered 384-d vectors, so 100k chunks need no hour of embedding):
     insert rate, index build (embedded Qdrant), search p50/p95 calling the store directly and
     through gRPC (Search with a vector), recall@10 against exact brute force, filtered search
     p95 and recall (a 10%-selective metadata filter);
     Hybrid search (issue 17): every synthetic chunk also carries a BM25 sparse vector (the real
     encoder over pseudo-words drawn from a Zipf distribution, as word frequencies are), and
     hybrid (dense + sparse, RRF) p95 is measured against dense-only p95 on the same queries,
     alternating (target: hybrid p95 <= 2x dense p95);
  2. ingest part (the real embedder): raw embedder throughput on N paragraph-sized texts, then
     UpsertDocuments of the same texts through gRPC into a dense-only collection and into one
     with sparse vectors; the ratios are the verdicts (service / raw >= 0.8, with sparse /
     dense-only >= 0.85), measured in alternating rounds so all see the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np

from ragway.core.grpc_server import GRPC_OPTIONS
from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.fusion import fuse_by_document
from ragway.retrieval.server import start_server
from ragway.retrieval.sparse import NAME as SPARSE_ENCODER
from ragway.retrieval.sparse import SparseEncoder
from ragway.retrieval.stores.base import (
    ChunkPoint,
    CollectionSpec,
    Filter,
    Query,
    SparseVector,
    StoredChunk,
    VectorStore,
)
from ragway.v1 import retrieval_pb2 as pb
from ragway.v1 import retrieval_pb2_grpc

T = TypeVar("T")
DIM = 384
GROUPS = 10
INGEST_ROUND = 256
WORDS = (
    "river mountain engine protocol garden violin harbour glacier orbit lantern copper meadow algorithm "
    "bakery cathedral voltage pigment compass falcon tundra ledger quartz canyon monsoon saddle ferment "
    "satellite orchard kernel tapestry beacon reef lattice cipher prairie turbine archive nectar"
).split()


def clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around 1,000 centres: closer to real embeddings than uniform noise."""
    centres = rng.normal(size=(1_000, DIM)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def paragraphs(n: int, rng: np.random.Generator) -> list[str]:
    """Paragraph-sized texts (~80 words), each one chunk under the default 200-token chunks."""
    return [" ".join(rng.choice(WORDS, 80)) + "." for _ in range(n)]


VOCABULARY = 50_000


def zipf_texts(n: int, words: int, rng: np.random.Generator) -> list[str]:
    """Texts of pseudo-words ("t123") whose frequencies follow Zipf's law, like a real vocabulary."""
    ids = np.minimum(rng.zipf(1.15, size=(n, words)), VOCABULARY)
    return [" ".join(f"t{i}" for i in row) for row in ids]


async def hybrid(store: VectorStore, dense: np.ndarray, terms: SparseVector) -> list[StoredChunk]:
    """A hybrid RRF search as the service runs it: the two lists, then fusion by document."""
    depth = Query().prefetch_limit(10)
    found = await asyncio.gather(
        store.query("bench", Query(dense=dense), depth, Filter()),
        store.query("bench", Query(sparse=terms), depth, Filter()),
    )
    return fuse_by_document(found[0], found[1], (1.0, 1.0), 10)


def sparse_vectors(texts: list[str], encoder: SparseEncoder) -> list[SparseVector]:
    out: list[SparseVector] = []
    for start in range(0, len(texts), 5_000):
        out.extend(encoder.documents(texts[start : start + 5_000]))
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def timed(call: Awaitable[T]) -> tuple[float, T]:
    """Milliseconds to complete `call` (a coroutine or a gRPC call, not started before), and its result."""
    started = time.perf_counter()
    result = await call
    return (time.perf_counter() - started) * 1000, result


def open_store(backend: str, folder: Path) -> VectorStore:
    if backend == "qdrant":
        from ragway.retrieval.stores.qdrant_edge import QdrantEdgeStore

        # Index explicitly below, so the build time is measured on its own.
        return QdrantEdgeStore(folder / "qdrant", optimize_after_points=10**12)
    from ragway.retrieval.stores.milvus import MilvusStore

    return MilvusStore(str(folder / "milvus.db"))


def recall(found: list[list[str]], exact: list[list[str]]) -> float:
    return statistics.mean(len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True))


async def bench_backend(backend: str, args: argparse.Namespace, embedder: Embedder) -> dict[str, float]:
    rng = np.random.default_rng(7)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"ragway-bench-{backend}-") as tmp:
        store = open_store(backend, Path(tmp))
        encoder = SparseEncoder()
        await store.create_collection(
            CollectionSpec("bench", DIM, embedder=embedder.name, sparse=SPARSE_ENCODER)
        )
        x = clustered(args.chunks, rng)
        started = time.perf_counter()
        sparse = sparse_vectors(zipf_texts(args.chunks, 60, rng), encoder)
        out["sparse_encode_per_s"] = args.chunks / (time.perf_counter() - started)
        started = time.perf_counter()
        for start in range(0, args.chunks, 1_000):
            batch = [
                ChunkPoint(f"doc{i}", 0, 1, f"chunk {i}", {"group": i % GROUPS}, x[i], sparse[i])
                for i in range(start, min(start + 1_000, args.chunks))
            ]
            await store.write("bench", batch)
        out["insert_per_s"] = args.chunks / (time.perf_counter() - started)
        del sparse
        if backend == "qdrant":
            started = time.perf_counter()
            store.optimize("bench")  # type: ignore[attr-defined]
            out["index_build_s"] = time.perf_counter() - started
        queries = x[rng.integers(0, args.chunks, args.queries)] + 0.1 * rng.normal(size=(args.queries, DIM))
        queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
        scores = queries @ x.T
        exact = [[f"doc{i}" for i in np.argsort(-row)[:10]] for row in scores]
        group = [int(g) for g in rng.integers(0, GROUPS, args.queries)]
        exact_filtered = []
        for row, g in zip(scores, group, strict=True):
            masked = np.where(np.arange(args.chunks) % GROUPS == g, row, -np.inf)
            exact_filtered.append([f"doc{i}" for i in np.argsort(-masked)[:10]])
        del scores

        direct: list[float] = []
        found: list[list[str]] = []
        for q in queries:
            ms, hits = await timed(store.search("bench", q, 10, Filter()))
            direct.append(ms)
            found.append([h.document_id for h in hits])
        out["direct_p50_ms"], out["direct_p95_ms"] = pct(direct, 50), pct(direct, 95)
        out["recall_at_10"] = recall(found, exact)

        # Hybrid against dense-only on the same queries, alternating so both see the same load.
        query_terms = [encoder.query(t) for t in zipf_texts(args.queries, 4, rng)]
        dense_ms: list[float] = []
        hybrid_ms: list[float] = []
        sparse_ms: list[float] = []
        for q, terms in zip(queries, query_terms, strict=True):
            dense_ms.append((await timed(store.query("bench", Query(dense=q), 10, Filter())))[0])
            hybrid_ms.append((await timed(hybrid(store, q, terms)))[0])
            sparse_ms.append((await timed(store.query("bench", Query(sparse=terms), 10, Filter())))[0])
        out["dense_p95_ms"], out["hybrid_p95_ms"] = pct(dense_ms, 95), pct(hybrid_ms, 95)
        out["sparse_p95_ms"] = pct(sparse_ms, 95)
        out["hybrid_over_dense_p95"] = out["hybrid_p95_ms"] / out["dense_p95_ms"]

        settings = RetrievalSettings(data_dir=Path(tmp), port=0, metrics_port=0)
        running = await start_server(settings, port=0, embedder=embedder, store=store)
        try:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{running.port}", options=GRPC_OPTIONS
            ) as channel:
                stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
                warm = pb.SearchRequest(
                    collection="bench", vector=pb.Vector(values=queries[0].tolist()), top_k=10
                )
                await stub.Search(warm)
                through: list[float] = []
                for q in queries:
                    request = pb.SearchRequest(
                        collection="bench", vector=pb.Vector(values=q.tolist()), top_k=10
                    )
                    through.append((await timed(stub.Search(request)))[0])
                out["grpc_p50_ms"], out["grpc_p95_ms"] = pct(through, 50), pct(through, 95)
                out["grpc_overhead_p50_ms"] = out["grpc_p50_ms"] - out["direct_p50_ms"]

                filtered: list[float] = []
                found = []
                for q, g in zip(queries, group, strict=True):
                    where = pb.Filter(must=[pb.FieldCondition(key="group", equals={"number_value": g})])
                    request = pb.SearchRequest(
                        collection="bench", vector=pb.Vector(values=q.tolist()), top_k=10, filter=where
                    )
                    ms, reply = await timed(stub.Search(request))
                    filtered.append(ms)
                    found.append([h.document_id for h in reply.hits])
                out["filtered_p95_ms"] = pct(filtered, 95)
                out["filtered_recall_at_10"] = recall(found, exact_filtered)

                texts = paragraphs(args.ingest_chunks, rng)
                embedder.embed(texts[:32])  # warm up
                # A collection made the old way (dense only) and one with sparse vectors.
                await store.create_collection(CollectionSpec("dense_only", DIM, embedder=embedder.name))
                await stub.CreateCollection(pb.CreateCollectionRequest(name="with_sparse"))
                raw_s = service_s = sparse_s = 0.0
                written = 0
                # Alternate raw and service rounds on the same texts, so both see the same load
                # from whatever else runs on the machine.
                for start in range(0, len(texts), INGEST_ROUND):
                    round_texts = texts[start : start + INGEST_ROUND]
                    started = time.perf_counter()
                    for i in range(0, len(round_texts), settings.embed_batch_size):
                        embedder.embed(round_texts[i : i + settings.embed_batch_size])
                    raw_s += time.perf_counter() - started
                    started = time.perf_counter()
                    for collection in ("dense_only", "with_sparse"):
                        started = time.perf_counter()
                        for i in range(0, len(round_texts), args.request_docs):
                            docs = [
                                pb.DocumentInput(id=f"ingest{start + i + j}", text=text)
                                for j, text in enumerate(round_texts[i : i + args.request_docs])
                            ]
                            request = pb.UpsertDocumentsRequest(collection=collection, documents=docs)
                            written += (await stub.UpsertDocuments(request)).chunks_written
                        if collection == "dense_only":
                            service_s += time.perf_counter() - started
                        else:
                            sparse_s += time.perf_counter() - started
                assert written == 2 * len(texts)
                out["raw_embed_per_s"] = len(texts) / raw_s
                out["service_ingest_per_s"] = len(texts) / service_s
                out["ingest_ratio"] = out["service_ingest_per_s"] / out["raw_embed_per_s"]
                out["sparse_ingest_per_s"] = len(texts) / sparse_s
                out["sparse_ingest_ratio"] = out["sparse_ingest_per_s"] / out["service_ingest_per_s"]
        finally:
            await running.stop()
    return out


LABELS = [
    ("insert_per_s", "store insert, vectors/s", "{:,.0f}"),
    ("index_build_s", "HNSW build (optimize), s", "{:.1f}"),
    ("direct_p50_ms", "search direct p50, ms", "{:.2f}"),
    ("direct_p95_ms", "search direct p95, ms", "{:.2f}"),
    ("grpc_p50_ms", "search via gRPC p50, ms", "{:.2f}"),
    ("grpc_p95_ms", "search via gRPC p95, ms", "{:.2f}"),
    ("grpc_overhead_p50_ms", "gRPC overhead p50, ms (<= 2)", "{:.2f}"),
    ("recall_at_10", "recall@10 vs exact (>= 0.95)", "{:.3f}"),
    ("filtered_p95_ms", "filtered search p95 (10%), ms", "{:.2f}"),
    ("filtered_recall_at_10", "filtered recall@10", "{:.3f}"),
    ("sparse_encode_per_s", "sparse encoder, texts/s", "{:,.0f}"),
    ("dense_p95_ms", "dense search p95, ms", "{:.2f}"),
    ("sparse_p95_ms", "sparse search p95, ms", "{:.2f}"),
    ("hybrid_p95_ms", "hybrid search p95, ms", "{:.2f}"),
    ("hybrid_over_dense_p95", "hybrid / dense p95 (<= 2)", "{:.2f}"),
    ("raw_embed_per_s", "raw embedder, texts/s", "{:.1f}"),
    ("service_ingest_per_s", "ingest via gRPC, chunks/s", "{:.1f}"),
    ("ingest_ratio", "ingest / raw embedder (>= 0.8)", "{:.2f}"),
    ("sparse_ingest_per_s", "ingest with sparse, chunks/s", "{:.1f}"),
    ("sparse_ingest_ratio", "with sparse / dense-only (>= 0.85)", "{:.2f}"),
]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100_000, help="synthetic chunks in the store part")
    parser.add_argument("--queries", type=int, default=100, help="search queries per measurement")
    parser.add_argument(
        "--ingest-chunks", type=int, default=768, help="real texts embedded in the ingest part"
    )
    parser.add_argument("--request-docs", type=int, default=64, help="documents per UpsertDocuments call")
    parser.add_argument("--backends", default="qdrant,milvus", help="comma-separated: qdrant, milvus")
    args = parser.parse_args()
    embedder = Embedder()
    results = {}
    for backend in args.backends.split(","):
        print(
            f"--- {backend}: {args.chunks:,} chunks, {args.queries} queries, {args.ingest_chunks} real texts"
        )
        results[backend] = await bench_backend(backend, args, embedder)
        print(", ".join(f"{key}={value:.3g}" for key, value in results[backend].items()), flush=True)
    names = list(results)
    print(f"\n{'':34}" + "".join(f"{n:>16}" for n in names))
    for key, label, fmt in LABELS:
        cells = [fmt.format(results[n][key]) if key in results[n] else "-" for n in names]
        print(f"{label:34}" + "".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    asyncio.run(main())
