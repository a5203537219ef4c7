"""Vector stores benchmark: OpenAI's Files + Vector Stores APIs against the retrieval service's
own figures, as ratios measured in one run.

    python bench/vector_store_bench.py                          # ~10-15 min on 2 cores
    python bench/vector_store_bench.py --store-chunks 20000 --no-reindex   # a quick look

A retrieval service and a gateway (no model service: these routes never call it) run as real
processes on a fresh data folder.

  1. ingest: F files go through `/v1/files` and one file batch; the time from creating the batch
     to its `completed` is the ingest time (chunks / s). The raw embedder (in this process, the
     same model and batch size as the service) then embeds the very chunks the batch wrote (read
     back with GetDocument). Ratio = ingest chunks/s / raw texts/s, target >= 0.9. Rounds
     alternate, so both sides see the same machine load.
  2. search: a store of N chunks (default 100,000) is filled through a file batch with short
     static chunks; with --reindex (default) the retrieval service is restarted on the same port
     so it builds the HNSW index at start-up, as a production restart would. Then Q queries run
     one at a time, alternating the retrieval service's own Search (gRPC, the store's name) and
     `POST /v1/vector_stores/{id}/search` through the gateway (auth, billing, filters), same
     top_k. Ratio = API p95 / retrieval p95, target <= 1.5.

Run it on a quiet machine (`uptime` load under ~1.5, no EngineCore running).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
from harness import LOG_DIR, install_cleanup, make_api_key, spawn, start_gateway
from report import console, machine, print_table, save_json, verdict
from stats import pct

from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder
from ragway.v1 import retrieval_pb2 as pb
from ragway.v1 import retrieval_pb2_grpc
from tests.utils.processes import Service, free_port, grpc_serving, wait_until

NOWHERE = "127.0.0.1:9"  # no model service
WORDS = (
    "river mountain engine protocol garden violin harbour glacier orbit lantern copper meadow algorithm "
    "bakery cathedral voltage pigment compass falcon tundra ledger quartz canyon monsoon saddle ferment "
    "satellite orchard kernel tapestry beacon reef lattice cipher prairie turbine archive nectar"
).split()


def text_of(words: int, rng: random.Random) -> str:
    sentences = []
    for _ in range(max(1, words // 12)):
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + ".")
    return " ".join(sentences)


def start_retrieval(data_dir: Path, port: int, name: str) -> Service:
    service = spawn(
        name,
        "retrieval",
        {
            "RAGWAY_DATA_DIR": str(data_dir),
            "RAGWAY_RETRIEVAL_PORT": str(port),
            "RAGWAY_RETRIEVAL_METRICS_PORT": str(free_port()),
        },
    )
    wait_until(service, lambda: grpc_serving(f"127.0.0.1:{port}"), 900)
    return service


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=900)
        self.user_id = self.http.get("/v1/me").json()["id"]

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.http.request(method, path, **kwargs)
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text[:300]}")
        return reply.json()

    def store(self, name: str, chunk_tokens: int | None = None) -> str:
        body: dict[str, Any] = {"name": name}
        if chunk_tokens:
            body["chunking_strategy"] = {
                "type": "static",
                "static": {"max_chunk_size_tokens": chunk_tokens, "chunk_overlap_tokens": 0},
            }
        return str(self.call("POST", "/v1/vector_stores", json=body)["id"])

    def upload(self, texts: list[str]) -> list[str]:
        return [
            self.call(
                "POST", "/v1/files", files={"file": (f"f{n}.txt", t.encode())}, data={"purpose": "assistants"}
            )["id"]
            for n, t in enumerate(texts)
        ]

    def batch(self, store: str, file_ids: list[str]) -> float:
        """Seconds from creating the batch to its completion."""
        started = time.perf_counter()
        batch = self.call("POST", f"/v1/vector_stores/{store}/file_batches", json={"file_ids": file_ids})
        while batch["status"] == "in_progress":
            # As often as the SDK's poll helpers (the gateway's openai-poll-after-ms): a tighter
            # loop spends the CPU the ingestion needs on status reads.
            time.sleep(0.25)
            batch = self.call("GET", f"/v1/vector_stores/{store}/file_batches/{batch['id']}")
        elapsed = time.perf_counter() - started
        counts = batch["file_counts"]
        if batch["status"] != "completed" or counts["completed"] != len(file_ids):
            raise RuntimeError(f"batch ended {batch['status']}: {counts}")
        return elapsed


def ingest_part(
    api: Api, stub: retrieval_pb2_grpc.RetrievalServiceStub, embedder: Embedder, args: argparse.Namespace
) -> dict[str, float]:
    rng = random.Random(1)
    batch_size = RetrievalSettings().embed_batch_size
    ingest_s = raw_s = 0.0
    chunks = texts_embedded = 0
    for round_ in range(args.rounds):
        store = api.store(f"ingest-{round_}")
        files = api.upload([text_of(args.file_words, rng) for _ in range(args.files)])
        ingest_s += api.batch(store, files)
        name = f"{api.user_id}__{store}"
        written = [
            c.text
            for f in files
            for c in stub.GetDocument(pb.GetDocumentRequest(collection=name, id=f)).chunks
        ]
        chunks += len(written)
        if round_ == 0:
            embedder.embed(written[:32])  # warm up
        started = time.perf_counter()
        for i in range(0, len(written), batch_size):
            embedder.embed(written[i : i + batch_size])
        raw_s += time.perf_counter() - started
        texts_embedded += len(written)
        console.print(f"  ingest round {round_}: {len(written)} chunks")
    out = {
        "ingest_chunks": float(chunks),
        "ingest_per_s": chunks / ingest_s,
        "raw_embed_per_s": texts_embedded / raw_s,
    }
    out["ingest_ratio"] = out["ingest_per_s"] / out["raw_embed_per_s"]
    return out


def fill_store(
    api: Api, stub: retrieval_pb2_grpc.RetrievalServiceStub, args: argparse.Namespace
) -> tuple[str, str]:
    rng = random.Random(2)
    store = api.store("search", chunk_tokens=args.chunk_tokens)
    name = f"{api.user_id}__{store}"
    started = time.perf_counter()
    vectors = 0
    while vectors < args.store_chunks:
        files = api.upload([text_of(args.big_file_words, rng) for _ in range(16)])
        api.batch(store, files)
        vectors = int(stub.DescribeCollection(pb.DescribeCollectionRequest(name=name)).vector_count)
        console.print(f"  store: {vectors:,} chunks after {time.perf_counter() - started:.0f} s")
    return store, name


def search_part(api: Api, address: str, store: str, name: str, args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(3)
    queries = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(args.queries + 10)]
    direct: list[float] = []
    through: list[float] = []
    with grpc.insecure_channel(address) as channel:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        for n, query in enumerate(queries):
            started = time.perf_counter()
            hits = stub.Search(pb.SearchRequest(collection=name, text=query, top_k=10)).hits
            direct_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            found = api.call(
                "POST", f"/v1/vector_stores/{store}/search", json={"query": query, "max_num_results": 10}
            )
            api_ms = (time.perf_counter() - started) * 1000
            if len(found["data"]) != len(hits):
                raise RuntimeError(f"the API found {len(found['data'])} results, the service {len(hits)}")
            if n >= 10:  # the first 10 warm both paths
                direct.append(direct_ms)
                through.append(api_ms)
    out = {
        "direct_p50_ms": pct(direct, 50),
        "direct_p95_ms": pct(direct, 95),
        "api_p50_ms": pct(through, 50),
        "api_p95_ms": pct(through, 95),
    }
    out["search_p95_ratio"] = out["api_p95_ms"] / out["direct_p95_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=32, help="files per ingest round")
    parser.add_argument("--file-words", type=int, default=1500, help="words per file in the ingest part")
    parser.add_argument("--rounds", type=int, default=2, help="ingest rounds (raw embedder after each)")
    parser.add_argument("--store-chunks", type=int, default=100_000, help="chunks in the searched store")
    parser.add_argument(
        "--chunk-tokens", type=int, default=24, help="static chunk size of the searched store"
    )
    parser.add_argument("--big-file-words", type=int, default=20_000, help="words per file filling the store")
    parser.add_argument("--queries", type=int, default=200, help="measured queries per path")
    parser.add_argument("--no-reindex", action="store_true", help="skip the restart that builds HNSW")
    parser.add_argument("--json", type=Path, default=None, help="write results here as JSON")
    args = parser.parse_args()
    install_cleanup()
    console.print(f"machine: {machine()}; logs in {LOG_DIR}")
    data_dir = Path(tempfile.mkdtemp(prefix="ragway-vs-bench-"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    retrieval = start_retrieval(data_dir / "retrieval", port, "retrieval-vs")
    gateway = start_gateway("gateway-vs", data_dir / "gateway", NOWHERE, address)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    api = Api(gateway.address, make_api_key(gateway.address, gateway.extra["admin_key"]))
    embedder = Embedder()
    results: dict[str, float] = {}
    with grpc.insecure_channel(address) as channel:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        console.print(f"--- ingest: {args.rounds} rounds of {args.files} files")
        results |= ingest_part(api, stub, embedder, args)
        console.print(f"--- search: filling a store to {args.store_chunks:,} chunks")
        store, name = fill_store(api, stub, args)
        results["store_chunks"] = float(
            stub.DescribeCollection(pb.DescribeCollectionRequest(name=name)).vector_count
        )
    if not args.no_reindex:
        console.print("--- restarting the retrieval service (it builds the HNSW index at start-up)")
        started = time.perf_counter()
        retrieval.stop()
        retrieval = start_retrieval(data_dir / "retrieval", port, "retrieval-vs-2")
        results["restart_and_index_s"] = time.perf_counter() - started
        time.sleep(6)  # the gateway's channel reconnects within its 5 s backoff
    console.print(f"--- search: {args.queries} queries per path, alternating")
    results |= search_part(api, address, store, name, args)
    results["load1_end"] = os.getloadavg()[0]
    print_table(
        "vector stores",
        ["figure", "value", "verdict"],
        [
            ["file-batch ingest, chunks/s", results["ingest_per_s"], ""],
            ["raw embedder, texts/s (same chunks)", results["raw_embed_per_s"], ""],
            [
                "ingest / raw embedder (>= 0.9)",
                results["ingest_ratio"],
                verdict(results["ingest_ratio"], 0.9, True),
            ],
            ["chunks in the searched store", int(results["store_chunks"]), ""],
            [
                "retrieval Search p50 / p95, ms",
                f"{results['direct_p50_ms']:.2f} / {results['direct_p95_ms']:.2f}",
                "",
            ],
            ["API search p50 / p95, ms", f"{results['api_p50_ms']:.2f} / {results['api_p95_ms']:.2f}", ""],
            [
                "API p95 / retrieval p95 (<= 1.5)",
                results["search_p95_ratio"],
                verdict(results["search_p95_ratio"], 1.5, False),
            ],
            ["load1 at the end", results["load1_end"], ""],
        ],
    )
    save_json(args.json, {"machine": machine(), "args": vars(args), "results": results})
    gateway.stop()
    retrieval.stop()


if __name__ == "__main__":
    main()
